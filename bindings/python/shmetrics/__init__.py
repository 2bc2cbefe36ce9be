"""shmetrics for Python: metrics of every worker process written into one shmetrics
shared-memory region, which shmetrics-gateway merges and serves as /metrics.

Backend mode, for code written against prometheus_client (the app's and its libraries'):

    import shmetrics
    shmetrics.install()                   # region from SHMETRICS_REGION; before any metric

Native mode, prometheus_client's classes with their hot calls in native code:

    import shmetrics                      # or set SHMETRICS_REGION=myapp
    shmetrics.attach('myapp')             # before the first metric
    REQUESTS = shmetrics.Counter('http_requests_total', 'Requests.', ['method'])
    REQUESTS.labels('GET').inc()

Workers forked after metrics were created (gunicorn --preload) each write their own slot.
"""

from ._backend import install, installed
from ._metrics import Counter, Enum, Gauge, Histogram, Info, RegionError, Summary, attach

__all__ = ['Counter', 'Gauge', 'Histogram', 'Summary', 'Info', 'Enum', 'RegionError', 'attach',
           'install', 'installed']
