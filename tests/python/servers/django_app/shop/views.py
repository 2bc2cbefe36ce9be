import os

from django.http import HttpResponse


def hello(request):
    response = HttpResponse('hello')
    response['X-Worker-Pid'] = str(os.getpid())
    return response
