// SPDX-License-Identifier: MIT
// Makes the shared library importable as rope_cuda._C. The module itself is empty: importing it
// loads the library, whose static initializers (registration.cpp) register the ops with torch.

#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "rope_cuda's op library (ops register on import)", -1,
                               nullptr};
  return PyModule_Create(&module);
}
