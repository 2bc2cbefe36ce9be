"""shmetrics for Python, native mode: prometheus_client's Counter, Gauge, Histogram and Summary
writing into a shmetrics shared-memory region, which shmetrics-gateway merges over every process
and serves as /metrics.

    import shmetrics                      # or set SHMETRICS_REGION=myapp
    shmetrics.attach('myapp')             # before the first metric
    REQUESTS = shmetrics.Counter('http_requests_total', 'Requests.', ['method'])
    REQUESTS.labels('GET').inc()

Workers forked after metrics were created (gunicorn --preload) each write their own slot.
"""

from ._metrics import Counter, Gauge, Histogram, RegionError, Summary, attach

__all__ = ['Counter', 'Gauge', 'Histogram', 'Summary', 'RegionError', 'attach']
