# The one change that moves the app's metrics into the shmetrics region named by
# $SHMETRICS_REGION: before the app (and so prometheus_client's metrics) is imported.
import shmetrics
shmetrics.install()
