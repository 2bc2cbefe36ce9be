# Packaging.cmake: `cpack -G DEB` (scripts/package) makes shmetrics_<version>_<arch>.deb, the
# gateway and shmetrics-inspect, libshmetrics.so.1 with its C header, .so link and shmetrics.pc,
# the systemd unit, sysusers.d entry and /etc/default file, the docs and deploy/'s Prometheus and
# Grafana files.
#
# Only the install components runtime and c_dev go in (set where each file is installed: gateway/,
# bindings/c/, deploy/). Everything else installed by `cmake --install` stays out: the static C++
# libraries, their headers and CMake config, shmetrics-loadgen, the Python package and
# shmetrics-run, which are not components, so they are CMake's "Unspecified".
# The binaries carry no RUNPATH into the build tree: they link shared system libraries only, and
# CMake drops the build RPATH when it installs (CMAKE_INSTALL_RPATH is empty); tests/deploy's
# deb_package_test checks that with readelf.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME shmetrics)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Prometheus metrics of pre-forked servers, from shared memory")
# With CPACK_SET_DESTDIR, CPACK_INSTALL_PREFIX is the prefix (it defaults to the build's
# CMAKE_INSTALL_PREFIX, /usr/local); both say /usr.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "shmetrics maintainers <maintainers@users.noreply.b-seed-162e36b0.example>")
# Absolute destinations (/etc/default) are staged under DESTDIR instead of written to the host.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)

set(CPACK_COMPONENTS_ALL runtime c_dev)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)  # one package: shmetrics

set(CPACK_DEBIAN_PACKAGE_NAME shmetrics)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # shmetrics_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The synopsis line is the summary; CPack indents these lines.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "A pre-forked server's workers write their metrics into one POSIX shared-memory
region through a lock-free client library; shmetrics-gateway merges the region
and serves /metrics to Prometheus (text, OpenMetrics and protobuf, native
histograms), and shmetrics-inspect reports on a region without a gateway.
.
This package holds both programs, the C library libshmetrics.so.1 with its
header and pkg-config file, a hardened systemd unit (installed, not enabled:
set SHMETRICS_REGION in /etc/default/shmetrics-gateway first), and Prometheus
alert rules and a Grafana dashboard under /usr/share/shmetrics.")
# Depends from the ELF files, by dpkg-shlibdeps (dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# A shlibs file for libshmetrics.so.1 and the ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS systemd)
set(_deb ${PROJECT_SOURCE_DIR}/deploy/debian)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${_deb}/conffiles ${_deb}/postinst ${_deb}/prerm ${_deb}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
