"""Imported at start-up by every interpreter that shmetrics-run starts (this directory leads
PYTHONPATH): installs the shmetrics backend before the program's own code can create a metric,
then runs the sitecustomize this file shadows, if there is one later on sys.path (Debian's, a
venv's, the user's), as ddtrace's bootstrap does.

It never stops the interpreter. This file runs in every Python process under the command, not
only the app's: a helper script, another Python that cannot load the extension, a tool without
prometheus_client. A process that cannot install the backend prints one line on stderr naming the
region and the reason, and runs as it would without shmetrics-run (its metrics stay in the
process, the gateway does not see them).

The shmetrics package is the one this directory belongs to, not whichever sys.path finds first,
so the launcher and every process under it agree on it even when the command is another
environment's interpreter.
"""

import importlib.machinery
import importlib.util
import os
import sys

_BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_BOOTSTRAP_DIR)


def _import_shmetrics():
    if 'shmetrics' in sys.modules:
        return sys.modules['shmetrics']
    spec = importlib.util.spec_from_file_location(
        'shmetrics', os.path.join(_PACKAGE_DIR, '__init__.py'),
        submodule_search_locations=[_PACKAGE_DIR])
    module = importlib.util.module_from_spec(spec)
    sys.modules['shmetrics'] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules['shmetrics']
        raise
    return module


def _install():
    region = os.environ.get('SHMETRICS_REGION', '')
    try:
        _import_shmetrics().install()
    except Exception as e:
        reason = ' '.join(f'{type(e).__name__}: {e}'.split())  # one line, whatever the message
        sys.stderr.write(f"shmetrics-run: {sys.executable} (pid {os.getpid()}) runs without "
                         f"shmetrics, region '{region}': {reason}\n")


def _run_shadowed_sitecustomize():
    this = sys.modules.get('sitecustomize')
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BOOTSTRAP_DIR]
    spec = importlib.machinery.PathFinder.find_spec('sitecustomize', path)
    if spec is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules['sitecustomize'] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules['sitecustomize'] = this
        raise  # site reports it as it reports any sitecustomize's error


_install()
_run_shadowed_sitecustomize()
