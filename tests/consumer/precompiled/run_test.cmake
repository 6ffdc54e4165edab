# SPDX-License-Identifier: MIT
# The precompiled consumer test: build the add_subdirectory consumer with rope::precompiled (one
# type, one architecture), run it, install what it built, then build and run the find_package
# consumer against that install. Fails on any error.
set(routes precompiled precompiled_find_package)
set(prefix ${BUILD}/install)
file(REMOVE_RECURSE ${BUILD})
foreach(route IN LISTS routes)
  set(build ${BUILD}/${route})
  set(route_args -DCMAKE_PREFIX_PATH=${prefix})
  if(route STREQUAL "precompiled")
    set(route_args -DROPE_SOURCE=${ROPE_SOURCE} -DROPE_PRECOMPILED_TYPES=bfloat16)
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${SOURCE}/${route} -B ${build} -G ${GENERATOR} ${route_args}
            -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=${ARCH} -DCMAKE_BUILD_TYPE=Release
    RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "configuring ${route} failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "building ${route} failed")
  endif()
  execute_process(COMMAND ${build}/consumer RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "${route}'s consumer failed")
  endif()
  if(route STREQUAL "precompiled")
    execute_process(COMMAND ${CMAKE_COMMAND} --install ${build} --prefix ${prefix} RESULT_VARIABLE failed)
    if(failed)
      message(FATAL_ERROR "installing rope with rope::precompiled failed")
    endif()
  endif()
endforeach()
