# SPDX-License-Identifier: MIT
# The consumer program of both precompiled routes. Its translation unit is an object library so
# that the check below can read the object itself: it must call the library's launchers (undefined
# symbols) and hold no kernel, while the linked program must hold the library's kernels (the
# check's pattern is not vacuous).
add_library(consumer_main OBJECT ${CMAKE_CURRENT_LIST_DIR}/main.cu)
target_link_libraries(consumer_main PUBLIC rope::precompiled)
add_executable(consumer)
target_link_libraries(consumer PRIVATE consumer_main)
if(NOT CMAKE_NM)
  message(FATAL_ERROR "no nm found: the precompiled consumer check reads symbol tables with it")
endif()
add_custom_command(TARGET consumer POST_BUILD
  COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM} "-DOBJECTS=$<TARGET_OBJECTS:consumer_main>"
          -DPROGRAM=$<TARGET_FILE:consumer> -P ${CMAKE_CURRENT_LIST_DIR}/check_symbols.cmake
  VERBATIM)
