# SPDX-License-Identifier: MIT
"""Builds rope_cuda._C, the torch op library, from the repository's C++ headers.

torch.utils.cpp_extension is used (rather than CMake) because it needs nothing beyond torch and
setuptools, which every torch user has, and it picks the compiler flags, ABI and CUDA
architectures that match the installed torch: TORCH_CUDA_ARCH_LIST if set, else the visible GPUs.
"""

import os

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

HERE = os.path.dirname(os.path.abspath(__file__))
# The library's headers live beside this folder; pip builds in place, so they are found there.
INCLUDE = os.path.normpath(os.path.join(HERE, "..", "include"))
if not os.path.isfile(os.path.join(INCLUDE, "rope", "rope.cuh")):
    raise RuntimeError(f"rope headers not found at {INCLUDE}: build from the repository checkout "
                       "(pip install ./python --no-build-isolation)")

CSRC = os.path.join("rope_cuda", "csrc")
FLAGS = ["-O3", "-std=c++17"]
# torch adds -D__CUDA_NO_HALF_OPERATORS__ (and friends) to every nvcc command for ATen's sake.
# launch.cu includes no ATen, and the library is written and tested with CUDA's own half/bf16
# operators, so they are restored for it.
NVCC_FLAGS = FLAGS + [f"-U__CUDA_NO_{name}__" for name in
                      ("HALF_OPERATORS", "HALF_CONVERSIONS", "BFLOAT16_CONVERSIONS", "HALF2_OPERATORS")]

setup(
    ext_modules=[
        CUDAExtension(
            name="rope_cuda._C",
            sources=[os.path.join(CSRC, f) for f in ("apply.cpp", "registration.cpp", "module.cpp", "launch.cu")],
            include_dirs=[INCLUDE],
            extra_compile_args={"cxx": FLAGS, "nvcc": NVCC_FLAGS},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
