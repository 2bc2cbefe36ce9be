"""Builds shmetrics._native with the repository's own CMake build, so pip and cmake compile the
same sources with the same flags. setuptools runs no CMake and scikit-build is not in Debian 12:
CMakeBuild configures the repository root in a temporary directory (gateway, tests, benchmarks and
examples off; Debian's interpreter, the base of the venv pip runs in), builds the extension target
and copies it into the package with libshmetrics.so.1 beside it.

The only input is a source checkout (this directory inside the repository); nothing is downloaded.
Every build directory is temporary, so the checkout is left as it was.
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE_ROOT = Path(__file__).resolve().parent
REPOSITORY = PACKAGE_ROOT.parents[1]


def fail(message):
    sys.exit(f'shmetrics setup.py: {message}')


def project_version():
    cmake_lists = REPOSITORY / 'CMakeLists.txt'
    try:
        text = cmake_lists.read_text(encoding='utf-8')
    except FileNotFoundError:
        fail(f'{cmake_lists} not found: build from a source checkout of shmetrics '
             '(bindings/python inside the repository)')
    match = re.search(r'project\(\s*shmetrics\s+VERSION\s+([0-9]+(?:\.[0-9]+)*)', text)
    if not match:
        fail(f'no "project(shmetrics VERSION x.y.z)" in {cmake_lists}')
    return match.group(1)


def run(command):
    print('shmetrics setup.py: ' + ' '.join(command), flush=True)
    try:
        status = subprocess.run(command).returncode
    except FileNotFoundError:
        fail(f'{command[0]} not found on PATH (Debian: apt-get install cmake)')
    if status != 0:
        fail(f'{" ".join(command)} exited with status {status}; its output is above')


class CMakeBuild(build_ext):
    # _native links libshmetrics.so.1, the C ABI every binding goes through, and the package
    # carries that library beside it (RPATH $ORIGIN) instead of a static copy of the client inside
    # _native: the library exports only shmetrics_* (its version script), and in a process where
    # something else loads libshmetrics.so.1 too, the loader shares the one already loaded (same
    # SONAME), so the process has one client and one writer slot.

    def build_extension(self, ext):
        target = Path(self.get_ext_fullpath(ext.name)).resolve()
        python = getattr(sys, '_base_executable', None) or sys.executable
        with tempfile.TemporaryDirectory(prefix='shmetrics-cmake-') as build:
            run(['cmake', '-S', str(REPOSITORY), '-B', build,
                 '-DCMAKE_BUILD_TYPE=Release',
                 '-DSHMETRICS_BUILD_GATEWAY=OFF', '-DSHMETRICS_BUILD_TESTS=OFF',
                 '-DSHMETRICS_BUILD_BENCH=OFF', '-DSHMETRICS_BUILD_EXAMPLES=OFF',
                 '-DSHMETRICS_BUILD_PYTHON=ON', '-DSHMETRICS_BUILD_NODE=OFF',
                 f'-DPython3_EXECUTABLE={python}',
                 '-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON', '-DSHMETRICS_PYTHON_RPATH=$ORIGIN'])
            command = ['cmake', '--build', build, '--target', 'shmetrics_python']
            if self.parallel:
                command += ['--parallel', str(self.parallel)]
            elif 'CMAKE_BUILD_PARALLEL_LEVEL' not in os.environ:
                command += ['--parallel', str(os.cpu_count() or 1)]
            run(command)
            built = Path(build, 'bindings', 'python', 'shmetrics', target.name)
            if not built.is_file():
                found = sorted(p.name for p in built.parent.glob('_native*'))
                fail(f'the CMake build made {found or "no _native"}, not {target.name}: '
                     f'it built for another interpreter than {python}?')
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, target)
            # The file the symlink names, under the SONAME the extension asks for.
            shutil.copy2(Path(build, 'bindings', 'c', 'libshmetrics.so.1'),
                         target.parent / 'libshmetrics.so.1')


# setuptools' own build tree and egg-info go to a temporary directory too.
_scratch = tempfile.mkdtemp(prefix='shmetrics-setuptools-')
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)

setup(
    version=project_version(),
    ext_modules=[Extension('shmetrics._native', sources=[])],
    cmdclass={'build_ext': CMakeBuild},
    options={'build': {'build_base': os.path.join(_scratch, 'build')},
             'egg_info': {'egg_base': _scratch}},
)
