# CMake toolchain for the aarch64 (Jetson: Cortex-A78AE, ARMv8.2-A) cross build with Debian's cross compiler
# (package g++-aarch64-linux-gnu, sysroot /usr/aarch64-linux-gnu). Tests run through qemu-user, without binfmt
# registration: CMAKE_CROSSCOMPILING_EMULATOR prefixes every ctest command. Used by scripts/test_aarch64.sh:
#   cmake -S . -B build/aarch64 --toolchain cmake/aarch64-linux-gnu.cmake -DEDGEACT_BUILD_PYTHON_MODULE=OFF ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(EDGEACT_AARCH64_PREFIX "aarch64-linux-gnu" CACHE STRING "cross toolchain prefix")
set(EDGEACT_AARCH64_SYSROOT "/usr/${EDGEACT_AARCH64_PREFIX}" CACHE PATH "target libraries (qemu -L)")
set(CMAKE_C_COMPILER "${EDGEACT_AARCH64_PREFIX}-gcc")
set(CMAKE_CXX_COMPILER "${EDGEACT_AARCH64_PREFIX}-g++")
set(CMAKE_FIND_ROOT_PATH "${EDGEACT_AARCH64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # host tools
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)    # target libraries only
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# qemu's -L prefix: the sysroot, or a folder that links to it and adds files the guest should see instead of the
# host's (scripts/test_aarch64.sh adds proc/cpuinfo: qemu-user looks every path the guest opens up under the prefix
# first).
set(EDGEACT_QEMU_PREFIX "${EDGEACT_AARCH64_SYSROOT}" CACHE PATH "qemu-aarch64-static -L prefix for ctest")
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64-static;-L;${EDGEACT_QEMU_PREFIX}")
