"""A minimal Django site instrumented the way django-prometheus documents it: its app, its two
middlewares around the others, its urls. No database."""

SECRET_KEY = 'only-for-tests'
DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1']
INSTALLED_APPS = ['django_prometheus']
MIDDLEWARE = [
    'django_prometheus.middleware.PrometheusBeforeMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django_prometheus.middleware.PrometheusAfterMiddleware',
]
ROOT_URLCONF = 'shop.urls'
DATABASES = {}
USE_TZ = True
