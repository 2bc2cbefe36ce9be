"""shmetrics-run: runs a command so that every Python process it starts writes prometheus_client's
metrics into a shmetrics region, with no change to the code (the convention of ddtrace-run and
opentelemetry-instrument):

    SHMETRICS_REGION=myapp shmetrics-run uvicorn --workers 4 app:app

It sets SHMETRICS_REGION, puts the package's _bootstrap directory first on PYTHONPATH and execs the
command. Every interpreter started with that environment (the command, its children, and the
fresh interpreters a server spawns: uvicorn's workers, multiprocessing's 'spawn') imports the
bootstrap's sitecustomize at start-up, which calls shmetrics.install() before the program's own
code runs; see _bootstrap/sitecustomize.py for what a process that cannot install it does.
Interpreters that ignore PYTHONPATH or skip site (python -I, -E, -S) are not instrumented.
"""

import os
import sys

USAGE = """\
usage: shmetrics-run [--region NAME] [--] COMMAND [ARG...]

Runs COMMAND so that every Python process it starts, including fresh interpreters a server
spawns, writes prometheus_client's metrics into the shmetrics region NAME, which
shmetrics-gateway serves. The code needs no change.

options:
  --region NAME  the region (default: $SHMETRICS_REGION); COMMAND and its children see it as
                 SHMETRICS_REGION
  -h, --help     show this help and exit

exit status: COMMAND's; 2 for a usage error or no region; 126 if COMMAND cannot be executed;
127 if COMMAND is not found.
"""

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_bootstrap')


def _usage_error(message):
    sys.stderr.write(f'shmetrics-run: {message}\n{USAGE.splitlines()[0]}\n'
                     "Try 'shmetrics-run --help' for more.\n")
    return 2


def _python_path_with_bootstrap(python_path):
    """PYTHONPATH with the bootstrap first, and only once when shmetrics-run runs shmetrics-run.
    An empty PYTHONPATH stays without an empty entry, which would mean the current directory."""
    entries = [p for p in python_path.split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    return os.pathsep.join([BOOTSTRAP_DIR] + entries)


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    region = None
    while args and args[0].startswith('-'):
        option = args.pop(0)
        if option in ('-h', '--help'):
            sys.stdout.write(USAGE)
            return 0
        if option == '--':
            break
        if option == '--region':
            if not args:
                return _usage_error('--region needs a region name')
            region = args.pop(0)
        elif option.startswith('--region='):
            region = option[len('--region='):]
        else:
            return _usage_error(f'unknown option {option}')
        if not region:
            return _usage_error('--region needs a non-empty region name')
    if not args:
        return _usage_error('no command given')
    if region is None:
        region = os.environ.get('SHMETRICS_REGION', '')
        if not region:
            sys.stderr.write('shmetrics-run: no region: set SHMETRICS_REGION or pass --region NAME '
                             '(the region shmetrics-gateway serves)\n')
            return 2

    os.environ['SHMETRICS_REGION'] = region
    os.environ['PYTHONPATH'] = _python_path_with_bootstrap(os.environ.get('PYTHONPATH', ''))
    command = args[0]
    try:
        os.execvp(command, args)
    except FileNotFoundError:
        sys.stderr.write(f'shmetrics-run: {command}: command not found\n')
        return 127
    except OSError as e:
        sys.stderr.write(f'shmetrics-run: {command}: cannot execute: {e.strerror}\n')
        return 126


if __name__ == '__main__':
    sys.exit(main())
