/* infratrace._speedups module definition: see speedups.h. */
#include "speedups.h"

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "infratrace._speedups",
    "C implementation of infratrace's span hot path and stable JSON line encoder.",
    -1,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (it_span_module_init(module) < 0 || it_encode_module_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
