from django.urls import include, path

from shop import views

urlpatterns = [
    path('hello', views.hello),
    path('', include('django_prometheus.urls')),
]
