"""A FastAPI app instrumented the usual way, with plain prometheus_client and nothing else: the
tests run it unchanged under prometheus_client's multiprocess mode and under shmetrics (switched
on by gunicorn.conf.py or shmetrics-run, never here).

Routes: GET /ping, POST /echo (a JSON list, answered with its length), GET /missing (404).
Each response names the worker that served it, so a test can tell its connections apart.
"""

import os
import time

from fastapi import FastAPI, HTTPException, Request
from prometheus_client import Counter, Gauge, Histogram, Summary

REQUESTS = Counter('http_requests', 'HTTP requests answered.', ['method', 'path', 'status'])
LATENCY = Histogram('http_request_duration_seconds', 'Time to answer a request.',
                    ['method', 'path'], buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 2.5))
IN_PROGRESS = Gauge('http_requests_inprogress', 'Requests being answered.',
                    multiprocess_mode='livesum')
REQUEST_SIZE = Summary('http_request_size_bytes', 'Request body sizes.', ['path'])
ECHO_ITEMS = Histogram('echo_items', 'Items per /echo request.', buckets=(1, 5, 10, 50))
WORKERS_UP = Gauge('workers_up', 'Workers serving requests.', multiprocess_mode='livesum')

app = FastAPI()


@app.on_event('startup')
def worker_started():
    # At startup rather than import: with --preload the import runs once, in the master.
    WORKERS_UP.set(1)


@app.middleware('http')
async def instrument(request: Request, call_next):
    start = time.perf_counter()
    with IN_PROGRESS.track_inprogress():
        response = await call_next(request)
    path = request.url.path
    LATENCY.labels(request.method, path).observe(time.perf_counter() - start)
    REQUESTS.labels(request.method, path, str(response.status_code)).inc()
    response.headers['X-Worker-Pid'] = str(os.getpid())
    return response


@app.get('/ping')
def ping():
    return {'pong': True}


@app.post('/echo')
async def echo(request: Request):
    body = await request.body()
    REQUEST_SIZE.labels('/echo').observe(len(body))
    items = await request.json()
    ECHO_ITEMS.observe(len(items))
    return {'items': len(items)}


@app.get('/missing')
def missing():
    raise HTTPException(status_code=404, detail='nothing here')
