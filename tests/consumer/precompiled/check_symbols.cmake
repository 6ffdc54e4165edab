# SPDX-License-Identifier: MIT
# The consumer's object calls rope::precompiled's launchers and compiles none of their kernels;
# the linked program holds those kernels (so the pattern below does match where kernels are).
set(kernel_pattern "rotate_tokens_kernel|rotate_head_groups_kernel")
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND ${NM} -C ${object} OUTPUT_VARIABLE symbols RESULT_VARIABLE read)
  if(NOT read EQUAL 0)
    message(FATAL_ERROR "${NM} could not read ${object}")
  endif()
  # Every launcher main.cu calls must be an undefined symbol: the library defines it.
  foreach(launcher
      "rope::rope_forward<__nv_bfloat16>(rope::RopeParams<__nv_bfloat16> const&"
      "rope::rope_forward<__nv_bfloat16>(__nv_bfloat16 const*"
      "rope::rope_backward<__nv_bfloat16>(rope::RopeParams<__nv_bfloat16> const&"
      "rope::rope_forward_append<__nv_bfloat16, __nv_bfloat16>("
      "rope::rope_forward_append<__nv_bfloat16, __nv_fp8_e4m3>("
      "rope::rope_forward_qk_norm<__nv_bfloat16, __nv_bfloat16>("
      "rope::rope_forward_qk_norm<__nv_bfloat16, float>(")
    string(FIND "${symbols}" " U cudaError ${launcher}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "${object} does not call the library's ${launcher}...) (not an undefined symbol)")
    endif()
  endforeach()
  if(symbols MATCHES "[^\n]*(${kernel_pattern})[^\n]*")
    message(FATAL_ERROR "${object} compiled a kernel of its own, though it links rope::precompiled:\n"
                        "${CMAKE_MATCH_0}")
  endif()
endforeach()
execute_process(COMMAND ${NM} -C ${PROGRAM} OUTPUT_VARIABLE symbols RESULT_VARIABLE read)
if(NOT read EQUAL 0 OR NOT symbols MATCHES "${kernel_pattern}")
  message(FATAL_ERROR "${PROGRAM} holds no rope kernel: the library's kernels were not linked")
endif()
message(STATUS "consumer object: no kernels, calls rope::precompiled; program: links its kernels")
