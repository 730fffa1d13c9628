/* infratrace._speedups: the C implementation of the span hot path and of the
 * stable-schema JSON line encoder. Optional: infratrace falls back to its pure-Python
 * implementation (infratrace/_span.py, infratrace/_fields.py) when this module is not
 * built, and the test suite checks that both produce the same spans and lines. */
#ifndef INFRATRACE_SPEEDUPS_H
#define INFRATRACE_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A recording span. Field meanings match infratrace/_span.py's pure-Python Span:
 * ids are integers (the 128-bit trace id split in two halves), times are
 * perf_counter_ns() readings (0 = not ended), optional members are NULL or None. */
typedef struct {
    PyObject_HEAD
    PyObject *name;       /* str */
    PyObject *kind;       /* str: internal server client producer consumer */
    PyObject *attributes; /* dict */
    PyObject *token;      /* NULL/None or the contextvars.Token of begin() */
    PyObject *status;     /* NULL/None (ok, code 0, "") or (status, code, message) */
    PyObject *events;     /* NULL/None or [(name, unix_ns, attributes)] */
    PyObject *ctx;        /* NULL/None (flags 01, no tracestate) or (flags, tracestate) */
    uint64_t tid_hi;
    uint64_t tid_lo;
    uint64_t sid;
    uint64_t pid;         /* 0: no parent */
    int64_t t0;
    int64_t t1;
} SpanObject;

#define IT_NONE(o) ((o) == NULL || (o) == Py_None)

extern PyTypeObject SpanBase_Type;
#define SpanBase_Check(o) PyObject_TypeCheck((o), &SpanBase_Type)

/* span.c */
int it_span_module_init(PyObject *module);
/* encode.c: adds the StableLines type to the module. */
int it_encode_module_init(PyObject *module);

#endif
