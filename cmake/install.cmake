# Install rules and the Debian package, included from the top-level CMakeLists.txt:
#
#   cmake -S . -B build -G Ninja && ninja -C build balance
#   cmake --install build                      # under /usr/local (or --prefix DIR)
#   cd build && cpack -G DEB                   # balance_<version>_<arch>.deb, for /usr
#   apt-get install ./balance_*.deb
#
# Installed: bin/balance, share/man/man1/balance.1(.gz), lib/systemd/system/balance{,@}.service,
# share/bash-completion/completions/balance, share/doc/balance/{example.conf,README.md,SCALING.md}.
# The .deb's dependencies are computed by dpkg-shlibdeps (Debian package dpkg-dev).

include(GNUInstallDirs)

set(BALANCE_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd units go, relative to the prefix (or absolute)")
set(BALANCE_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions" CACHE STRING
    "Where the bash completion goes, relative to the prefix (or absolute)")
option(BALANCE_GZIP_MAN "Install the man page compressed with gzip" ON)
set(BALANCE_PACKAGE_MAINTAINER "balance maintainers <balance@example.org>" CACHE STRING
    "Maintainer field of the Debian package")

set(_balance_src "${PROJECT_SOURCE_DIR}")
set(_balance_gen "${PROJECT_BINARY_DIR}/install-files")
file(MAKE_DIRECTORY "${_balance_gen}")

# --- the program
install(TARGETS balance RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

# --- the man page (compressed at install time, so building only the `balance` target is enough)
find_program(BALANCE_GZIP_PROGRAM gzip)
if(BALANCE_GZIP_MAN AND BALANCE_GZIP_PROGRAM)
  install(CODE "
    execute_process(COMMAND \"${BALANCE_GZIP_PROGRAM}\" -9 -n -c \"${_balance_src}/balance.1\"
                    OUTPUT_FILE \"${_balance_gen}/balance.1.gz\" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR \"gzip of balance.1 failed: \${rc}\")
    endif()
  ")
  install(FILES "${_balance_gen}/balance.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
else()
  install(FILES "${_balance_src}/balance.1" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
endif()

# --- the systemd units: their ExecStart names the installed program, so /usr/bin/balance in
# the sources becomes <prefix>/<bindir>/balance, worked out when installing (cpack installs
# with the prefix /usr into a staging DESTDIR; `cmake --install --prefix P` uses P).
install(CODE "
  set(bindir \"${CMAKE_INSTALL_BINDIR}\")
  if(NOT IS_ABSOLUTE \"\${bindir}\")
    set(bindir \"\${CMAKE_INSTALL_PREFIX}/\${bindir}\")
  endif()
  foreach(unit balance.service balance@.service)
    file(READ \"${_balance_src}/dist/systemd/\${unit}\" text)
    string(REPLACE \"/usr/bin/balance \" \"\${bindir}/balance \" text \"\${text}\")
    file(WRITE \"${_balance_gen}/\${unit}\" \"\${text}\")
  endforeach()
")
install(FILES "${_balance_gen}/balance.service" "${_balance_gen}/balance@.service"
        DESTINATION "${BALANCE_SYSTEMD_UNITDIR}")

# --- bash completion, example configuration and documents
install(FILES "${_balance_src}/dist/bash-completion/balance" DESTINATION "${BALANCE_BASH_COMPLETIONDIR}")
install(FILES "${_balance_src}/dist/systemd/example.conf" "${_balance_src}/README.md"
              "${_balance_src}/docs/SCALING.md"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}")

# --- the Debian package
file(WRITE "${_balance_gen}/postinst" [=[#!/bin/sh
set -e
if [ "$1" = configure ]; then
    mkdir -p /etc/balance
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
fi
exit 0
]=])
# Removing the package stops the instances it started (upgrading it does not: "systemctl reload"
# upgrades them in place). Without this they went on running from the deleted program file.
file(WRITE "${_balance_gen}/prerm" [=[#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop balance.service 'balance@*.service' >/dev/null 2>&1 || true
fi
exit 0
]=])
file(WRITE "${_balance_gen}/postrm" [=[#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
fi
if [ "$1" = purge ]; then
    rmdir /etc/balance 2>/dev/null || true
fi
exit 0
]=])
file(CHMOD "${_balance_gen}/postinst" "${_balance_gen}/prerm" "${_balance_gen}/postrm"
     PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

if(NOT CPACK_GENERATOR)
  set(CPACK_GENERATOR "DEB")
endif()
set(CPACK_PACKAGE_NAME "balance")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "balance")
set(CPACK_PACKAGE_CONTACT "${BALANCE_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TCP load balancer, a drop-in replacement for balance 3.57")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_NAME "balance")
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")  # balance_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${BALANCE_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends: from dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
# The summary above is the first line; these lines follow it (an empty line separates paragraphs).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION [=[balance accepts connections on a port and forwards each one to one of several
backend servers, with round-robin, client-hash (Maglev) or least-connections
distribution, a connection limit and a weight per server, failover to further
groups of servers, active health checks and the PROXY protocol.

It keeps the command line, channel groups and control shell of Inlab's
classic balance, and adds Prometheus metrics, a live status page, graceful
stop and upgrade in place. Ships systemd units and a bash completion.]=])
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${_balance_gen}/postinst;${_balance_gen}/prerm;${_balance_gen}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
