/* The span hot path in C: the SpanBase type (what infratrace.Span is built on when
 * this module is available) and the begin()/start_span() functions of the built-in
 * tracer. The logic mirrors infratrace/_span.py and Tracer.start_span in
 * infratrace/_tracer.py; anything unusual (a parent that is not a span, a mapping
 * that is not a dict, an exhausted span budget, an end() with a result) is handed to
 * that Python code, so the rare paths exist once. */
#include "speedups.h"
#include <structmember.h>
#include <time.h>

/* -- what infratrace/_span.py installs (see install()) ------------------------------ */
static PyObject *g_current;        /* ContextVar: the current span */
static PyObject *g_budget;         /* ContextVar: the active SpanBudget or None */
static PyTypeObject *g_span_type;  /* infratrace.Span (a subclass of SpanBase) */
static PyObject *g_slow_start;     /* Tracer.start_span of the pure-Python code */
static PyObject *g_apply_result;   /* Span._apply_result(span, result, status, code, message) */
static PyObject *g_leave;          /* _leave(span, token) */
static PyObject *g_default_kind;   /* dict: entry kind -> span kind */
static PyObject *g_kinds;          /* dict: the five span kinds -> themselves */
static PyObject *g_internal;       /* "internal" */
static PyObject *g_ok;             /* "ok" */
static PyObject *g_empty;          /* "" */
static PyObject *g_kwnames_start;  /* ("kind", "parent") */

/* -- where ended spans go (set_sink()) -------------------------------------------- */
static PyObject *g_sink;           /* a callable taking the span, or NULL */
static PyObject *g_pipeline;       /* or a Pipeline: its _queue deque, _wake_at, _after_append() */
static PyObject *g_queue;
static PyObject *g_queue_append;

/* interned attribute names */
static PyObject *s_used, *s_limit, *s_tid, *s_sid, *s_ctx, *s_token, *s_wake_at, *s_after_append;
static PyObject *s_kind, *s_name, *s_attrs, *s_parent, *s_result, *s_status, *s_code, *s_message;

/* -- clock ---------------------------------------------------------------------- */
#if defined(__linux__)
static inline int64_t
now_ns(void)
{
    /* time.perf_counter_ns() is CLOCK_MONOTONIC on Linux: the same readings. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#else
static PyObject *g_perf_counter_ns;
static inline int64_t
now_ns(void)
{
    PyObject *value = PyObject_CallNoArgs(g_perf_counter_ns);
    int64_t ns = value ? PyLong_AsLongLong(value) : 0;
    Py_XDECREF(value);
    if (PyErr_Occurred())
        PyErr_Clear();
    return ns;
}
#endif

/* -- ids: xoshiro256** seeded from os.urandom, reseeded in a forked child ---------- */
static uint64_t rng[4];

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t
next_id(void)
{
    uint64_t result = rotl(rng[1] * 5, 7) * 9;
    uint64_t t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

static PyObject *
reseed(PyObject *module, PyObject *unused)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return NULL;
    PyObject *bytes = PyObject_CallMethod(os, "urandom", "i", (int)sizeof(rng));
    Py_DECREF(os);
    if (bytes == NULL)
        return NULL;
    if (!PyBytes_Check(bytes) || PyBytes_GET_SIZE(bytes) != (Py_ssize_t)sizeof(rng)) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_RuntimeError, "os.urandom returned an unexpected value");
        return NULL;
    }
    memcpy(rng, PyBytes_AS_STRING(bytes), sizeof(rng));
    Py_DECREF(bytes);
    if (!(rng[0] | rng[1] | rng[2] | rng[3]))
        rng[0] = 1;
    Py_RETURN_NONE;
}

/* -- 128-bit ints ----------------------------------------------------------------- */
static PyObject *
u128_to_long(uint64_t hi, uint64_t lo)
{
    if (hi == 0)
        return PyLong_FromUnsignedLongLong(lo);
    PyObject *high = PyLong_FromUnsignedLongLong(hi);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *low = PyLong_FromUnsignedLongLong(lo);
    PyObject *shifted = NULL, *result = NULL;
    if (high && shift && low && (shifted = PyNumber_Lshift(high, shift)) != NULL)
        result = PyNumber_Or(shifted, low);
    Py_XDECREF(high);
    Py_XDECREF(shift);
    Py_XDECREF(low);
    Py_XDECREF(shifted);
    return result;
}

/* Split a non-negative int below 2**128; -1 with an exception otherwise. */
static int
long_to_u128(PyObject *value, uint64_t *hi, uint64_t *lo)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a trace id must be an int, not %.100s", Py_TYPE(value)->tp_name);
        return -1;
    }
    PyObject *shift = PyLong_FromLong(64);
    if (shift == NULL)
        return -1;
    PyObject *high = PyNumber_Rshift(value, shift);
    Py_DECREF(shift);
    if (high == NULL)
        return -1;
    uint64_t h = PyLong_AsUnsignedLongLong(high); /* negative or too big: OverflowError */
    Py_DECREF(high);
    if (h == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "a trace id must be a non-negative int below 2**128");
        return -1;
    }
    *hi = h;
    *lo = PyLong_AsUnsignedLongLongMask(value);
    return PyErr_Occurred() ? -1 : 0;
}

static int
long_to_u64(PyObject *value, uint64_t *out)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a span id must be an int, not %.100s", Py_TYPE(value)->tp_name);
        return -1;
    }
    uint64_t v = PyLong_AsUnsignedLongLong(value);
    if (v == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "a span id must be a non-negative int below 2**64");
        return -1;
    }
    *out = v;
    return 0;
}

/* -- SpanBase ------------------------------------------------------------------- */
static int
span_traverse(SpanObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->kind);
    Py_VISIT(self->attributes);
    Py_VISIT(self->token);
    Py_VISIT(self->status);
    Py_VISIT(self->events);
    Py_VISIT(self->ctx);
    return 0;
}

static int
span_clear(SpanObject *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->kind);
    Py_CLEAR(self->attributes);
    Py_CLEAR(self->token);
    Py_CLEAR(self->status);
    Py_CLEAR(self->events);
    Py_CLEAR(self->ctx);
    return 0;
}

static void
span_dealloc(SpanObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* Spans begun and never ended chain through their tokens, as budgets do. */
    Py_TRASHCAN_BEGIN(self, span_dealloc)
    span_clear(self);
    type->tp_free((PyObject *)self);
    Py_TRASHCAN_END
    /* A heap subclass's reference to its type is released by subtype_dealloc. */
}

typedef struct {
    PyObject_HEAD
    PyObject *ctx;       /* NULL/None (flags 01, no tracestate) or (flags, tracestate) */
    PyObject *is_remote; /* a bool */
    uint64_t tid_hi;
    uint64_t tid_lo;
    uint64_t sid;
} ContextObject;

static PyTypeObject ContextBase_Type;
#define ContextBase_Check(o) PyObject_TypeCheck((o), &ContextBase_Type)

/* A child's trace id, parent id and shared (flags, tracestate) from its parent's. */
static inline void
inherit_identity(SpanObject *span, uint64_t tid_hi, uint64_t tid_lo, uint64_t parent_sid, PyObject *ctx)
{
    span->tid_hi = tid_hi;
    span->tid_lo = tid_lo;
    span->pid = parent_sid;
    if (!IT_NONE(ctx)) {
        Py_INCREF(ctx);
        span->ctx = ctx;
    }
}

/* Fill a fresh span's identity from its parent (None: a new trace). 0 or -1. */
static int
span_set_parent(SpanObject *span, PyObject *parent)
{
    if (IT_NONE(parent)) {
        span->tid_hi = next_id();
        span->tid_lo = next_id();
        if (!(span->tid_hi | span->tid_lo))
            span->tid_lo = 1;
        span->pid = 0;
        return 0;
    }
    if (SpanBase_Check(parent)) {
        SpanObject *p = (SpanObject *)parent;
        inherit_identity(span, p->tid_hi, p->tid_lo, p->sid, p->ctx);
        return 0;
    }
    if (ContextBase_Check(parent)) {
        ContextObject *c = (ContextObject *)parent;
        inherit_identity(span, c->tid_hi, c->tid_lo, c->sid, c->ctx);
        return 0;
    }
    /* NonRecordingSpan, a SpanContext made without the C base or a replacement
     * hook's span: its attributes. */
    PyObject *tid = PyObject_GetAttr(parent, s_tid);
    if (tid == NULL)
        return -1;
    int rc = long_to_u128(tid, &span->tid_hi, &span->tid_lo);
    Py_DECREF(tid);
    if (rc < 0)
        return -1;
    PyObject *sid = PyObject_GetAttr(parent, s_sid);
    if (sid == NULL)
        return -1;
    rc = long_to_u64(sid, &span->pid);
    Py_DECREF(sid);
    if (rc < 0)
        return -1;
    PyObject *ctx = PyObject_GetAttr(parent, s_ctx);
    if (ctx == NULL)
        return -1;
    if (ctx == Py_None)
        Py_DECREF(ctx);
    else
        span->ctx = ctx;
    return 0;
}

static int
span_init(SpanObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"name", "attributes", "kind", "parent", NULL};
    PyObject *name, *attributes, *kind, *parent = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UOU|O:Span", keywords, &name, &attributes, &kind, &parent))
        return -1;
    span_clear(self);
    self->sid = next_id();
    if (!self->sid)
        self->sid = 1;
    if (span_set_parent(self, parent) < 0)
        return -1;
    Py_INCREF(name);
    self->name = name;
    Py_INCREF(kind);
    self->kind = kind;
    Py_INCREF(attributes);
    self->attributes = attributes;
    self->t1 = 0;
    self->t0 = now_ns();
    return 0;
}

/* Send an ended span to the pipeline. Failures are the tracer's, not the app's. */
static int
span_sink(SpanObject *self)
{
    PyObject *res;
    if (g_queue_append != NULL) {
        res = PyObject_CallOneArg(g_queue_append, (PyObject *)self);
        if (res == NULL)
            goto failed;
        Py_DECREF(res);
        Py_ssize_t queued = PyObject_Length(g_queue);
        if (queued < 0)
            goto failed;
        PyObject *wake_at = PyObject_GetAttr(g_pipeline, s_wake_at);
        if (wake_at == NULL)
            goto failed;
        Py_ssize_t threshold = PyLong_AsSsize_t(wake_at);
        Py_DECREF(wake_at);
        if (threshold == -1 && PyErr_Occurred())
            goto failed;
        if (queued >= threshold) {
            res = PyObject_CallMethodNoArgs(g_pipeline, s_after_append);
            if (res == NULL)
                goto failed;
            Py_DECREF(res);
        }
        return 0;
    }
    if (g_sink != NULL) {
        res = PyObject_CallOneArg(g_sink, (PyObject *)self);
        if (res == NULL)
            goto failed;
        Py_DECREF(res);
    }
    return 0;
failed:
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1; /* KeyboardInterrupt, SystemExit: not ours to swallow */
    PyErr_Clear();
    return 0;
}

/* An ended span waits in the pipeline's queues for a while: left in the garbage
 * collector's lists it would be promoted to the older generations and make full
 * collections more frequent (they traverse the whole application: costly in a Django
 * process). When nothing it holds can lead back to it — its attributes dict is one the
 * collector does not track (atomic values only), no events, a plain-str name; status
 * and context tuples hold only ints and strs — it cannot be part of a cycle, and is
 * taken off the collector's lists. Otherwise it stays tracked. */
static inline void
span_untrack_if_acyclic(SpanObject *self)
{
    PyObject *attributes = self->attributes;
    if (attributes != NULL && PyDict_CheckExact(attributes) && !PyObject_GC_IsTracked(attributes) &&
        IT_NONE(self->events) && self->name != NULL && PyUnicode_CheckExact(self->name) && PyObject_GC_IsTracked((PyObject *)self))
        PyObject_GC_UnTrack(self);
}

/* The end of end(): stop being the current span, then queue. */
static PyObject *
span_finish(SpanObject *self)
{
    PyObject *token = self->token;
    if (token != NULL) {
        self->token = NULL;  /* the token holds the parent: free it while we queue */
        if (token != Py_None && PyContextVar_Reset(g_current, token) < 0) {
            /* Ended in another context (another asyncio task): the Python code
             * undoes only what this span did there. */
            PyErr_Clear();
            PyObject *res = PyObject_CallFunctionObjArgs(g_leave, (PyObject *)self, token, NULL);
            if (res == NULL)
                PyErr_Clear();
            Py_XDECREF(res);
        }
        Py_DECREF(token);
    }
    span_untrack_if_acyclic(self);
    if (span_sink(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
span_end_with(SpanObject *self, PyObject *result, PyObject *status, PyObject *code, PyObject *message)
{
    if (self->t1)
        Py_RETURN_NONE;
    self->t1 = now_ns();
    if (IT_NONE(result) && IT_NONE(status) && IT_NONE(message)) {
        if (!IT_NONE(code)) {
            /* end(code=200): the web adapters' common case. */
            PyObject *st = self->status, *new_status;
            if (IT_NONE(st) || !PyTuple_Check(st) || PyTuple_GET_SIZE(st) != 3)
                new_status = PyTuple_Pack(3, g_ok, code, g_empty);
            else
                new_status = PyTuple_Pack(3, PyTuple_GET_ITEM(st, 0), code, PyTuple_GET_ITEM(st, 2));
            if (new_status == NULL)
                PyErr_Clear();
            else
                Py_XSETREF(self->status, new_status);
        }
    }
    else {
        PyObject *res = PyObject_CallFunctionObjArgs(
            g_apply_result, (PyObject *)self, result ? result : Py_None, status ? status : Py_None,
            code ? code : Py_None, message ? message : Py_None, NULL);
        if (res == NULL)
            PyErr_Clear();
        Py_XDECREF(res);
    }
    return span_finish(self);
}

static PyObject *
span_end(SpanObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *result = NULL, *status = NULL, *code = NULL, *message = NULL;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "end() takes at most 1 positional argument (%zd given)", nargs);
        return NULL;
    }
    if (nargs == 1)
        result = args[0];
    if (kwnames != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            PyObject *value = args[nargs + i];
            if (PyUnicode_Compare(key, s_code) == 0)
                code = value;
            else if (PyUnicode_Compare(key, s_status) == 0)
                status = value;
            else if (PyUnicode_Compare(key, s_message) == 0)
                message = value;
            else if (PyUnicode_Compare(key, s_result) == 0 && nargs == 0)
                result = value;
            else {
                PyErr_Format(PyExc_TypeError, "end() got an unexpected keyword argument '%U'", key);
                return NULL;
            }
        }
    }
    return span_end_with(self, result, status, code, message);
}

static PyObject *
span_enter(PyObject *self, PyObject *unused)
{
    Py_INCREF(self);
    return self;
}

static PyObject *
span_exit(SpanObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *exc = nargs >= 2 ? args[1] : NULL;
    PyObject *res = span_end_with(self, exc, NULL, NULL, NULL);
    if (res == NULL)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_NONE; /* never suppresses the exception */
}

/* -- attributes seen from Python ------------------------------------------------- */
/* The id attributes of SpanBase and ContextBase (_tid, _sid, _pid) as Python ints:
 * closure is the offset of the field in the object (for _tid, of tid_hi, which
 * tid_lo follows). */
#define ID_FIELD(self, closure) ((uint64_t *)((char *)(self) + (Py_ssize_t)(closure)))

static PyObject *
id128_get(PyObject *self, void *closure)
{
    uint64_t *field = ID_FIELD(self, closure);
    return u128_to_long(field[0], field[1]);
}

static int
id128_set(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _tid");
        return -1;
    }
    uint64_t *field = ID_FIELD(self, closure);
    return long_to_u128(value, &field[0], &field[1]);
}

static PyObject *
id64_get(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(*ID_FIELD(self, closure));
}

static int
id64_set(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a span id");
        return -1;
    }
    return long_to_u64(value, ID_FIELD(self, closure));
}

static PyObject *
span_get_trace_id(SpanObject *self, void *closure)
{
    char text[33];
    snprintf(text, sizeof(text), "%016llx%016llx", (unsigned long long)self->tid_hi, (unsigned long long)self->tid_lo);
    return PyUnicode_FromStringAndSize(text, 32);
}

static PyObject *
span_get_span_id(SpanObject *self, void *closure)
{
    uint64_t id = closure ? self->pid : self->sid;
    if (closure && !id)
        return PyUnicode_FromStringAndSize("", 0);
    char text[17];
    snprintf(text, sizeof(text), "%016llx", (unsigned long long)id);
    return PyUnicode_FromStringAndSize(text, 16);
}

static PyObject *
span_get_ended(SpanObject *self, void *closure)
{
    return PyBool_FromLong(self->t1 != 0);
}

static PyGetSetDef span_getset[] = {
    {"ended", (getter)span_get_ended, NULL, "whether end() was called", NULL},
    {"_tid", id128_get, id128_set, "the trace id (128-bit int)", (void *)offsetof(SpanObject, tid_hi)},
    {"_sid", id64_get, id64_set, "the span id (64-bit int)", (void *)offsetof(SpanObject, sid)},
    {"_pid", id64_get, id64_set, "the parent span id (0: none)", (void *)offsetof(SpanObject, pid)},
    {"trace_id", (getter)span_get_trace_id, NULL, "the trace id as 32 hex digits", NULL},
    {"span_id", (getter)span_get_span_id, NULL, "the span id as 16 hex digits", NULL},
    {"parent_span_id", (getter)span_get_span_id, NULL, "the parent's span id as 16 hex digits, or \"\"", (void *)1},
    {NULL},
};

static PyMemberDef span_members[] = {
    {"name", T_OBJECT, offsetof(SpanObject, name), 0, "the span name"},
    {"kind", T_OBJECT, offsetof(SpanObject, kind), 0, "internal, server, client, producer or consumer"},
    {"attributes", T_OBJECT, offsetof(SpanObject, attributes), 0, "the attributes (a dict)"},
    {"_token", T_OBJECT, offsetof(SpanObject, token), 0, NULL},
    {"_status", T_OBJECT, offsetof(SpanObject, status), 0, NULL},
    {"_events", T_OBJECT, offsetof(SpanObject, events), 0, NULL},
    {"_ctx", T_OBJECT, offsetof(SpanObject, ctx), 0, NULL},
    {"_t0", T_LONGLONG, offsetof(SpanObject, t0), 0, "start, perf_counter_ns()"},
    {"_t1", T_LONGLONG, offsetof(SpanObject, t1), 0, "end, perf_counter_ns() (0: running)"},
    {NULL},
};

/* set_attribute / set_attributes: _SpanMethods' (self.attributes[key] = value,
 * self.attributes.update(attributes)) without a Python frame; the adapters call them
 * on every request. */
static PyObject *
span_set_attribute(SpanObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set_attribute() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->attributes == NULL) {
        PyErr_SetString(PyExc_AttributeError, "attributes");
        return NULL;
    }
    if (PyObject_SetItem(self->attributes, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
span_set_attributes(SpanObject *self, PyObject *attributes)
{
    PyObject *own = self->attributes;
    if (own == NULL) {
        PyErr_SetString(PyExc_AttributeError, "attributes");
        return NULL;
    }
    if (PyDict_CheckExact(own) && PyDict_CheckExact(attributes)) {
        if (PyDict_Update(own, attributes) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(own, "update", "O", attributes);
}

static PyMethodDef span_methods[] = {
    {"set_attribute", (PyCFunction)(void (*)(void))span_set_attribute, METH_FASTCALL,
     "set_attribute(key, value): self.attributes[key] = value."},
    {"set_attributes", (PyCFunction)span_set_attributes, METH_O,
     "set_attributes(attributes): self.attributes.update(attributes)."},
    {"end", (PyCFunction)(void (*)(void))span_end, METH_FASTCALL | METH_KEYWORDS,
     "end(result=None, *, status=None, code=None, message=None): end the span (see infratrace.Span.end)."},
    {"__enter__", span_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))span_exit, METH_FASTCALL, NULL},
    {NULL},
};

PyTypeObject SpanBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "infratrace._speedups.SpanBase",
    .tp_basicsize = sizeof(SpanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C core of infratrace.Span (ids, times, end and the context-manager protocol).",
    .tp_traverse = (traverseproc)span_traverse,
    .tp_clear = (inquiry)span_clear,
    .tp_dealloc = (destructor)span_dealloc,
    .tp_methods = span_methods,
    .tp_members = span_members,
    .tp_getset = span_getset,
    .tp_init = (initproc)span_init,
    .tp_new = PyType_GenericNew,
};

/* -- SpanBudget: at most `limit` spans begun in one request (infratrace/_budget.py) -- */
typedef struct {
    PyObject_HEAD
    Py_ssize_t limit;
    Py_ssize_t used;
    Py_ssize_t dropped;
    PyObject *token; /* of activate(), or NULL */
} BudgetObject;

static PyTypeObject Budget_Type;
static PyObject *g_dropped_counter; /* itertools.count: budget refusals in this process */

static int
budget_init(BudgetObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"limit", NULL};
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:SpanBudget", keywords, &limit))
        return -1;
    self->limit = limit;
    self->used = 0;
    self->dropped = 0;
    Py_CLEAR(self->token);
    return 0;
}

static int
budget_traverse(BudgetObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->token); /* a token holds its context, which holds this budget */
    return 0;
}

static int
budget_clear(BudgetObject *self)
{
    Py_CLEAR(self->token);
    return 0;
}

static void
budget_dealloc(BudgetObject *self)
{
    PyObject_GC_UnTrack(self);
    /* A budget holds its activate() token, which holds the budget it replaced: budgets
       activated one after another and never deactivated form a chain. The trashcan
       frees a long chain iteratively instead of overflowing the C stack. */
    Py_TRASHCAN_BEGIN(self, budget_dealloc)
    budget_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
    Py_TRASHCAN_END
}

static int
count_refusal(BudgetObject *self)
{
    self->dropped++;
    if (g_dropped_counter != NULL) {
        PyObject *n = PyIter_Next(g_dropped_counter);
        if (n == NULL)
            return PyErr_Occurred() ? -1 : 0;
        Py_DECREF(n);
    }
    return 0;
}

static PyObject *
budget_take(BudgetObject *self, PyObject *unused)
{
    if (self->used >= self->limit) {
        if (count_refusal(self) < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    self->used++;
    Py_RETURN_TRUE;
}

static PyObject *
budget_activate(BudgetObject *self, PyObject *unused)
{
    if (g_budget == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "infratrace._speedups.install() was not called");
        return NULL;
    }
    PyObject *token = PyContextVar_Set(g_budget, (PyObject *)self);
    if (token == NULL)
        return NULL;
    Py_XSETREF(self->token, token);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *
budget_deactivate(BudgetObject *self, PyObject *unused)
{
    PyObject *token = self->token;
    if (token == NULL)
        Py_RETURN_NONE;
    self->token = NULL;
    int rc = PyContextVar_Reset(g_budget, token);
    Py_DECREF(token);
    if (rc == 0)
        Py_RETURN_NONE;
    if (!PyErr_ExceptionMatches(PyExc_ValueError))
        return NULL;
    /* Deactivated from another context: leave that context without this budget. */
    PyErr_Clear();
    PyObject *active;
    if (PyContextVar_Get(g_budget, Py_None, &active) < 0)
        return NULL;
    int mine = active == (PyObject *)self;
    Py_DECREF(active);
    if (mine) {
        PyObject *other = PyContextVar_Set(g_budget, Py_None);
        if (other == NULL)
            return NULL;
        Py_DECREF(other);
    }
    Py_RETURN_NONE;
}

static PyObject *
budget_repr(BudgetObject *self)
{
    return PyUnicode_FromFormat("SpanBudget(limit=%zd, used=%zd, dropped=%zd)", self->limit, self->used, self->dropped);
}

static PyMemberDef budget_members[] = {
    {"limit", T_PYSSIZET, offsetof(BudgetObject, limit), 0, "the most spans to begin"},
    {"used", T_PYSSIZET, offsetof(BudgetObject, used), 0, "spans begun so far"},
    {"dropped", T_PYSSIZET, offsetof(BudgetObject, dropped), 0, "spans refused so far"},
    {"_token", T_OBJECT, offsetof(BudgetObject, token), READONLY, NULL},
    {NULL},
};

static PyMethodDef budget_methods[] = {
    {"take", (PyCFunction)budget_take, METH_NOARGS,
     "Count one span; False (and counted as dropped) when over the limit."},
    {"activate", (PyCFunction)budget_activate, METH_NOARGS,
     "Make this the budget of the current context (until deactivate()); returns it."},
    {"deactivate", (PyCFunction)budget_deactivate, METH_NOARGS, "Undo activate()."},
    {NULL},
};

static PyTypeObject Budget_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "infratrace.SpanBudget",
    .tp_basicsize = sizeof(BudgetObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SpanBudget(limit): at most `limit` spans begin in the context it is active in "
              "(infratrace/_budget.py; this is its C version).",
    .tp_traverse = (traverseproc)budget_traverse,
    .tp_clear = (inquiry)budget_clear,
    .tp_dealloc = (destructor)budget_dealloc,
    .tp_repr = (reprfunc)budget_repr,
    .tp_methods = budget_methods,
    .tp_members = budget_members,
    .tp_init = (initproc)budget_init,
    .tp_new = PyType_GenericNew,
};

/* -- begin / start_span ------------------------------------------------------------ */
static PyObject *
slow_start(PyObject *name, PyObject *attrs, PyObject *kind, PyObject *parent)
{
    PyObject *args[5] = {NULL, name, attrs ? attrs : Py_None, kind ? kind : Py_None, parent ? parent : Py_None};
    return PyObject_Vectorcall(g_slow_start, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, g_kwnames_start);
}

/* The span kind: given (one of the five, or an entry kind mapped to one), else
 * implied by attributes["kind"], else internal. Borrowed reference or NULL (slow). */
static PyObject *
resolve_kind(PyObject *kind, PyObject *attributes)
{
    if (IT_NONE(kind)) {
        if (PyDict_GET_SIZE(attributes) == 0)
            return g_internal;
        PyObject *entry = PyDict_GetItemWithError(attributes, s_kind);
        if (entry == NULL) {
            PyErr_Clear();
            return g_internal;
        }
        PyObject *implied = PyDict_GetItemWithError(g_default_kind, entry);
        if (implied == NULL) {
            PyErr_Clear(); /* an unhashable "kind" value */
            return g_internal;
        }
        return implied;
    }
    if (!PyUnicode_CheckExact(kind))
        return NULL;
    PyObject *known = PyDict_GetItemWithError(g_kinds, kind);
    if (known != NULL)
        return known;
    PyObject *implied = PyDict_GetItemWithError(g_default_kind, kind);
    if (implied == NULL) {
        if (PyErr_Occurred())
            PyErr_Clear();
        return g_internal;
    }
    return implied;
}

/* The budget check of Tracer.start_span: 1 = take a span, 0 = over budget (the
 * Python code counts it), -1 = error. */
static int
budget_check(void)
{
    PyObject *budget;
    if (PyContextVar_Get(g_budget, Py_None, &budget) < 0)
        return -1;
    if (budget == Py_None) {
        Py_DECREF(budget);
        return 1;
    }
    if (Py_IS_TYPE(budget, &Budget_Type)) {
        BudgetObject *b = (BudgetObject *)budget;
        int ok = b->used < b->limit;
        if (ok)
            b->used++;
        Py_DECREF(budget);
        return ok;
    }
    int rc = -1;
    PyObject *used = PyObject_GetAttr(budget, s_used);
    PyObject *limit = used ? PyObject_GetAttr(budget, s_limit) : NULL;
    if (limit != NULL) {
        int over = PyObject_RichCompareBool(used, limit, Py_GE);
        if (over == 1)
            rc = 0;
        else if (over == 0) {
            PyObject *one = PyLong_FromLong(1);
            PyObject *next = one ? PyNumber_Add(used, one) : NULL;
            Py_XDECREF(one);
            if (next != NULL && PyObject_SetAttr(budget, s_used, next) == 0)
                rc = 1;
            Py_XDECREF(next);
        }
    }
    Py_XDECREF(used);
    Py_XDECREF(limit);
    Py_DECREF(budget);
    return rc;
}

static PyObject *
start_impl(PyObject *name, PyObject *attrs, PyObject *kind, PyObject *parent)
{
    if (g_span_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "infratrace._speedups.install() was not called");
        return NULL;
    }
    if (!PyUnicode_CheckExact(name) || !(IT_NONE(attrs) || PyDict_Check(attrs)) ||
        !(IT_NONE(kind) || PyUnicode_CheckExact(kind)))
        return slow_start(name, attrs, kind, parent);

    PyObject *current = NULL;
    if (IT_NONE(parent)) {
        if (PyContextVar_Get(g_current, Py_None, &current) < 0)
            return slow_start(name, attrs, kind, parent);
        parent = current;
    }
    SpanObject *span = (SpanObject *)g_span_type->tp_alloc(g_span_type, 0);
    if (span == NULL)
        goto slow;
    if (span_set_parent(span, parent) < 0) /* not a span: Tracer.start_span decides */
        goto slow;
    if (budget_check() != 1) /* over the request's budget: Tracer.start_span counts it */
        goto slow;
    span->attributes = IT_NONE(attrs) ? PyDict_New() : PyDict_Copy(attrs);
    if (span->attributes == NULL)
        goto slow;
    PyObject *resolved = resolve_kind(kind, span->attributes);
    if (resolved == NULL)
        resolved = g_internal;
    Py_INCREF(resolved);
    span->kind = resolved;
    Py_INCREF(name);
    span->name = name;
    uint64_t sid = next_id();
    span->sid = sid ? sid : 1;
    span->t0 = now_ns();
    Py_XDECREF(current);
    return (PyObject *)span;

slow:
    /* The rare cases, and any failure here, are the Python code's to decide: it never
     * raises into the application (a NonRecordingSpan at worst). */
    Py_XDECREF(span);
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_XDECREF(current);
            return NULL;
        }
        PyErr_Clear();
    }
    PyObject *fallback = slow_start(name, attrs, kind, parent);
    Py_XDECREF(current);
    return fallback;
}

static int
parse_start_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **name,
                 PyObject **attrs, PyObject **kind, PyObject **parent)
{
    *name = *attrs = *kind = *parent = NULL;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes from 1 to 2 positional arguments but %zd were given", fname, nargs);
        return -1;
    }
    if (nargs >= 1)
        *name = args[0];
    if (nargs == 2)
        *attrs = args[1];
    if (kwnames != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            PyObject *value = args[nargs + i];
            PyObject **slot;
            if (PyUnicode_Compare(key, s_kind) == 0)
                slot = kind;
            else if (PyUnicode_Compare(key, s_parent) == 0)
                slot = parent;
            else if (PyUnicode_Compare(key, s_attrs) == 0)
                slot = attrs;
            else if (PyUnicode_Compare(key, s_name) == 0)
                slot = name;
            else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
                return -1;
            }
            if (*slot != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname, key);
                return -1;
            }
            *slot = value;
        }
    }
    if (*name == NULL) {
        PyErr_Format(PyExc_TypeError, "%s() missing required argument 'name'", fname);
        return -1;
    }
    return 0;
}

static PyObject *
start_span(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name, *attrs, *kind, *parent;
    if (parse_start_args("start_span", args, nargs, kwnames, &name, &attrs, &kind, &parent) < 0)
        return NULL;
    return start_impl(name, attrs, kind, parent);
}

static PyObject *
begin(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name, *attrs, *kind, *parent;
    if (parse_start_args("begin", args, nargs, kwnames, &name, &attrs, &kind, &parent) < 0)
        return NULL;
    PyObject *span = start_impl(name, attrs, kind, parent);
    if (span == NULL)
        return NULL;
    PyObject *token = PyContextVar_Set(g_current, span);
    if (token == NULL) {
        Py_DECREF(span);
        return NULL;
    }
    if (Py_IS_TYPE(span, g_span_type)) {
        Py_XSETREF(((SpanObject *)span)->token, token);
    }
    else { /* a NonRecordingSpan from the Python code */
        int rc = PyObject_SetAttr(span, s_token, token);
        Py_DECREF(token);
        if (rc < 0)
            PyErr_Clear();
    }
    return span;
}

/* -- configuration from infratrace/_span.py ---------------------------------------- */
static PyObject *
install(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"span_type", "current", "budget", "slow_start", "apply_result", "leave",
                               "default_kind", "kinds", NULL};
    PyObject *span_type, *current, *budget, *slow, *apply_result, *leave, *default_kind, *kinds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOOOO!O!:install", keywords, &PyType_Type, &span_type, &current,
                                     &budget, &slow, &apply_result, &leave, &PyDict_Type, &default_kind, &PyDict_Type,
                                     &kinds))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)span_type, &SpanBase_Type)) {
        PyErr_SetString(PyExc_TypeError, "span_type must be a subclass of SpanBase");
        return NULL;
    }
    Py_INCREF(span_type);
    Py_XSETREF(g_span_type, (PyTypeObject *)span_type);
    Py_INCREF(current);
    Py_XSETREF(g_current, current);
    Py_INCREF(budget);
    Py_XSETREF(g_budget, budget);
    Py_INCREF(slow);
    Py_XSETREF(g_slow_start, slow);
    Py_INCREF(apply_result);
    Py_XSETREF(g_apply_result, apply_result);
    Py_INCREF(leave);
    Py_XSETREF(g_leave, leave);
    Py_INCREF(default_kind);
    Py_XSETREF(g_default_kind, default_kind);
    Py_INCREF(kinds);
    Py_XSETREF(g_kinds, kinds);
    Py_RETURN_NONE;
}

static PyObject *
install_budget(PyObject *module, PyObject *args)
{
    PyObject *var, *counter;
    if (!PyArg_ParseTuple(args, "OO:install_budget", &var, &counter))
        return NULL;
    Py_INCREF(var);
    Py_XSETREF(g_budget, var);
    Py_INCREF(counter);
    Py_XSETREF(g_dropped_counter, counter);
    Py_RETURN_NONE;
}

static PyObject *
set_sink(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"sink", "pipeline", NULL};
    PyObject *sink, *pipeline = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:set_sink", keywords, &sink, &pipeline))
        return NULL;
    PyObject *queue = NULL, *append = NULL;
    if (pipeline != Py_None) {
        queue = PyObject_GetAttrString(pipeline, "_queue");
        if (queue == NULL)
            return NULL;
        append = PyObject_GetAttrString(queue, "append");
        if (append == NULL) {
            Py_DECREF(queue);
            return NULL;
        }
        Py_INCREF(pipeline);
    }
    Py_XSETREF(g_pipeline, pipeline == Py_None ? NULL : pipeline);
    Py_XSETREF(g_queue, queue);
    Py_XSETREF(g_queue_append, append);
    Py_INCREF(sink);
    Py_XSETREF(g_sink, sink);
    Py_RETURN_NONE;
}

/* -- W3C traceparent ------------------------------------------------------------------- */
static inline int
hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not valid in a traceparent */
}

/* n lowercase hex digits -> value; -1 when one is not. */
static inline int
parse_hex(const unsigned char *s, int n, uint64_t *out)
{
    uint64_t value = 0;
    for (int i = 0; i < n; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        value = (value << 4) | (uint64_t)d;
    }
    *out = value;
    return 0;
}

static inline int
is_py_space(unsigned char c)
{
    /* str.isspace() on ASCII: \t \n \v \f \r, \x1c-\x1f and the space */
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

/* The ids of a traceparent header value, with the rules of the Python
 * parse_traceparent (infratrace/_propagation.py): (trace_id, span_id, flags), None
 * when it is not valid, NotImplemented when it is not an ASCII str (the Python code
 * decides those). */
/* -- ContextBase: the C core of infratrace.SpanContext (a remote span's identity) -- */
static PyTypeObject *g_context_type;   /* infratrace.SpanContext (a subclass of ContextBase) */
static PyObject *g_clean_tracestate;   /* _propagation._clean_tracestate */
static PyObject *g_parse_py;           /* _propagation.parse_traceparent_py */
static PyObject *g_one;                /* 1 */

/* (flags, tracestate), or None for the common case (sampled, no state). New reference. */
static PyObject *
context_ctx(uint64_t flags, PyObject *tracestate)
{
    if (flags == 1 && PyUnicode_Check(tracestate) && PyUnicode_GET_LENGTH(tracestate) == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(KO)", (unsigned long long)flags, tracestate);
}

static int
context_init(ContextObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"trace_id", "span_id", "flags", "tracestate", "is_remote", NULL};
    PyObject *trace_id, *span_id, *flags = NULL, *tracestate = NULL, *is_remote = Py_True;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OOO:SpanContext", keywords, &trace_id, &span_id, &flags,
                                     &tracestate, &is_remote))
        return -1;
    if (long_to_u128(trace_id, &self->tid_hi, &self->tid_lo) < 0 || long_to_u64(span_id, &self->sid) < 0)
        return -1;
    if (flags == NULL)
        flags = g_one;
    if (tracestate == NULL)
        tracestate = g_empty;
    /* as SpanContext.__init__: None if (flags == 1 and not tracestate) */
    int is_one = PyObject_RichCompareBool(flags, g_one, Py_EQ);
    int has_state = is_one == 1 ? PyObject_IsTrue(tracestate) : 1;
    if (is_one < 0 || has_state < 0)
        return -1;
    PyObject *ctx;
    if (is_one && !has_state) {
        ctx = Py_None;
        Py_INCREF(ctx);
    }
    else if ((ctx = PyTuple_Pack(2, flags, tracestate)) == NULL)
        return -1;
    Py_XSETREF(self->ctx, ctx);
    Py_INCREF(is_remote);
    Py_XSETREF(self->is_remote, is_remote);
    return 0;
}

static void
context_dealloc(ContextObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_CLEAR(self->ctx);
    Py_CLEAR(self->is_remote);
    type->tp_free((PyObject *)self);
}

static PyGetSetDef context_getset[] = {
    {"_tid", id128_get, id128_set, "the trace id (128-bit int)", (void *)offsetof(ContextObject, tid_hi)},
    {"_sid", id64_get, id64_set, "the span id (64-bit int)", (void *)offsetof(ContextObject, sid)},
    {NULL},
};

static PyMemberDef context_members[] = {
    {"_ctx", T_OBJECT, offsetof(ContextObject, ctx), 0, NULL},
    {"is_remote", T_OBJECT, offsetof(ContextObject, is_remote), 0, "whether it came from another process"},
    {NULL},
};

static PyTypeObject ContextBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "infratrace._speedups.ContextBase",
    .tp_basicsize = sizeof(ContextObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C core of infratrace.SpanContext: ids held as machine integers.",
    .tp_dealloc = (destructor)context_dealloc,
    .tp_members = context_members,
    .tp_getset = context_getset,
    .tp_init = (initproc)context_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *
install_context(PyObject *module, PyObject *args)
{
    PyObject *type, *clean, *parse_py;
    if (!PyArg_ParseTuple(args, "O!OO:install_context", &PyType_Type, &type, &clean, &parse_py))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)type, &ContextBase_Type)) {
        PyErr_SetString(PyExc_TypeError, "the context type must be a subclass of ContextBase");
        return NULL;
    }
    Py_INCREF(type);
    Py_XSETREF(g_context_type, (PyTypeObject *)type);
    Py_INCREF(clean);
    Py_XSETREF(g_clean_tracestate, clean);
    Py_INCREF(parse_py);
    Py_XSETREF(g_parse_py, parse_py);
    Py_RETURN_NONE;
}

/* The ids of a valid traceparent (0), or 1 when it is not valid. */
static int
traceparent_fields(const unsigned char *s, Py_ssize_t n, uint64_t *hi, uint64_t *lo, uint64_t *sid, uint64_t *flags)
{
    while (n > 0 && is_py_space(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_py_space(s[n - 1]))
        n--;
    /* vv-<32 hex>-<16 hex>-ff[-anything but a newline] */
    if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 1;
    uint64_t version;
    if (parse_hex(s, 2, &version) < 0 || parse_hex(s + 3, 16, hi) < 0 || parse_hex(s + 19, 16, lo) < 0 ||
        parse_hex(s + 36, 16, sid) < 0 || parse_hex(s + 53, 2, flags) < 0)
        return 1;
    if (n > 55) {
        if (s[55] != '-' || version == 0 || memchr(s + 56, '\n', (size_t)(n - 56)) != NULL)
            return 1;
    }
    if (version == 0xff || !(*hi | *lo) || !*sid)
        return 1;
    return 0;
}

/* parse_traceparent(value, tracestate=""): infratrace.parse_traceparent, with the
 * SpanContext made here (no Python call on the common path). */
static PyObject *
parse_traceparent(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "parse_traceparent(value, tracestate='')");
        return NULL;
    }
    PyObject *value = args[0];
    PyObject *tracestate = nargs > 1 ? args[1] : g_empty;
    if (g_context_type == NULL || g_parse_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "infratrace._speedups.install_context() was not called");
        return NULL;
    }
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value) || !PyUnicode_CheckExact(tracestate))
        return PyObject_Vectorcall(g_parse_py, args, (size_t)nargs, NULL);
    uint64_t hi, lo, sid, flags;
    if (traceparent_fields((const unsigned char *)PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), &hi, &lo, &sid,
                           &flags))
        Py_RETURN_NONE;
    PyObject *state;
    if (PyUnicode_GET_LENGTH(tracestate) == 0) {
        Py_INCREF(tracestate);
        state = tracestate;
    }
    else if ((state = PyObject_CallOneArg(g_clean_tracestate, tracestate)) == NULL)
        return NULL;
    PyObject *ctx = context_ctx(flags & 0xFF, state);
    Py_DECREF(state);
    if (ctx == NULL)
        return NULL;
    ContextObject *context = (ContextObject *)g_context_type->tp_alloc(g_context_type, 0);
    if (context == NULL) {
        Py_DECREF(ctx);
        return NULL;
    }
    context->tid_hi = hi;
    context->tid_lo = lo;
    context->sid = sid;
    context->ctx = ctx;
    Py_INCREF(Py_True);
    context->is_remote = Py_True;
    return (PyObject *)context;
}

/* -- finish_http_span: infratrace.web's, for the common case ------------------- */
static PyObject *g_finish_http_py; /* infratrace.web.finish_http_span_py: every other case */
static PyObject *s_status_code;    /* "http.response.status_code" */
static PyObject *s_spans_dropped;  /* "infratrace.spans_dropped" */
static PyObject *s_set_attribute;  /* "set_attribute" */
static PyObject *g_zero;           /* 0 */

static PyObject *
install_web(PyObject *module, PyObject *finish_py)
{
    Py_INCREF(finish_py);
    Py_XSETREF(g_finish_http_py, finish_py);
    Py_RETURN_NONE;
}

/* infratrace.web.report_budget: the spans the request's budget refused, recorded as
 * infratrace.spans_dropped on its span. Never raises. */
static void
report_drops(PyObject *span, BudgetObject *budget)
{
    if (!budget->dropped)
        return;
    PyObject *n = PyLong_FromSsize_t(budget->dropped);
    int rc = -1;
    if (n != NULL) {
        if (SpanBase_Check(span) && PyDict_CheckExact(((SpanObject *)span)->attributes))
            rc = PyDict_SetItem(((SpanObject *)span)->attributes, s_spans_dropped, n);
        else {
            PyObject *res = PyObject_CallMethodObjArgs(span, s_set_attribute, s_spans_dropped, n, NULL);
            rc = res == NULL ? -1 : 0;
            Py_XDECREF(res);
        }
        Py_DECREF(n);
    }
    if (rc < 0)
        PyErr_Clear();
}

/* finish_http_span(span, status_code, exc=None, budget=None): a running Span of the
 * built-in type that ends without an exception and below 500 is finished here (the
 * budget deactivated and its drops recorded, the status code recorded, end(code=...));
 * everything else goes to the Python function, which has the same rules. */
static PyObject *
finish_http_span(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (g_finish_http_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "infratrace._speedups.install_web() was not called");
        return NULL;
    }
    if (kwnames != NULL || nargs < 2 || nargs > 4 || g_span_type == NULL)
        goto slow;
    PyObject *span = args[0], *status = args[1];
    PyObject *exc = nargs > 2 ? args[2] : NULL, *budget = nargs > 3 ? args[3] : NULL;
    if (Py_TYPE(span) != g_span_type || !IT_NONE(exc) || ((SpanObject *)span)->t1 != 0 ||
        !PyDict_CheckExact(((SpanObject *)span)->attributes))
        goto slow;
    if (!IT_NONE(status)) {
        if (!PyLong_CheckExact(status))
            goto slow;
        long code = PyLong_AsLong(status);
        if (code == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto slow;
        }
        if (code >= 500)
            goto slow;
    }
    if (!IT_NONE(budget) && Py_TYPE(budget) != &Budget_Type)
        goto slow;
    SpanObject *sp = (SpanObject *)span;
    if (!IT_NONE(budget)) {
        PyObject *res = budget_deactivate((BudgetObject *)budget, NULL);
        if (res == NULL)
            PyErr_Clear();
        Py_XDECREF(res);
        report_drops(span, (BudgetObject *)budget);
    }
    if (!IT_NONE(status) && PyDict_SetItem(sp->attributes, s_status_code, status) < 0)
        PyErr_Clear();
    PyObject *code = IT_NONE(status) ? g_zero : status;
    PyObject *res = span_end_with(sp, NULL, NULL, code, NULL);
    if (res == NULL)
        PyErr_Clear(); /* never the application's problem */
    Py_XDECREF(res);
    Py_RETURN_NONE;
slow:
    return PyObject_Vectorcall(g_finish_http_py, args, (size_t)nargs, kwnames);
}

/* -- RequestTraceBase: a WSGI adapter's per-request state (infratrace_flask) ------ */
/* The fields and the per-request methods of infratrace_flask's RequestTrace (whose
 * pure-Python form, PyRequestTrace, is the reference): made, given the status, named
 * by its route and finished once per request, with no Python frame. */
typedef struct {
    PyObject_HEAD
    PyObject *span;
    PyObject *budget;         /* None or a SpanBudget */
    PyObject *options;
    PyObject *method;
    PyObject *start_response; /* the server's */
    PyObject *status_code;    /* None or int */
    PyObject *route;          /* None or str */
    PyObject *exc;            /* None or the exception */
    PyObject *streamed;       /* None, True or False */
    char finished;
} RequestTraceObject;

static PyObject *s_routes;      /* "_routes": the subclass's (method, route) -> (name, attrs) cache */
static PyObject *s_route_entry; /* "_route_entry": its function making an entry */

static int
rtrace_init(RequestTraceObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *span, *budget, *options, *method, *start_response;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "RequestTrace() takes positional arguments only");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "RequestTrace", 5, 5, &span, &budget, &options, &method, &start_response))
        return -1;
#define SET(field, value)                 \
    do {                                  \
        Py_INCREF(value);                 \
        Py_XSETREF(self->field, (value)); \
    } while (0)
    SET(span, span);
    SET(budget, budget);
    SET(options, options);
    SET(method, method);
    SET(start_response, start_response);
    SET(status_code, Py_None);
    SET(route, Py_None);
    SET(exc, Py_None);
    SET(streamed, Py_None);
#undef SET
    self->finished = 0;
    return 0;
}

static int
rtrace_traverse(RequestTraceObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->span);
    Py_VISIT(self->budget);
    Py_VISIT(self->options);
    Py_VISIT(self->method);
    Py_VISIT(self->start_response);
    Py_VISIT(self->status_code);
    Py_VISIT(self->route);
    Py_VISIT(self->exc);
    Py_VISIT(self->streamed);
    return 0;
}

static int
rtrace_clear(RequestTraceObject *self)
{
    Py_CLEAR(self->span);
    Py_CLEAR(self->budget);
    Py_CLEAR(self->options);
    Py_CLEAR(self->method);
    Py_CLEAR(self->start_response);
    Py_CLEAR(self->status_code);
    Py_CLEAR(self->route);
    Py_CLEAR(self->exc);
    Py_CLEAR(self->streamed);
    return 0;
}

static void
rtrace_dealloc(RequestTraceObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    rtrace_clear(self);
    type->tp_free((PyObject *)self);
}

/* status_only(status, headers, exc_info=None): the start_response given to the app when
 * no response header is recorded or added: keeps the status code, calls the server's. */
static PyObject *
rtrace_status_only(RequestTraceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "start_response() takes 2 or 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *status = args[0];
    if (PyUnicode_Check(status) && PyUnicode_GET_LENGTH(status) >= 3) {
        int kind = PyUnicode_KIND(status);
        const void *data = PyUnicode_DATA(status);
        long code = 0;
        int i;
        for (i = 0; i < 3; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < '0' || c > '9')
                break;
            code = code * 10 + (long)(c - '0');
        }
        if (i == 3) {
            PyObject *value = PyLong_FromLong(code);
            if (value == NULL)
                PyErr_Clear();
            else
                Py_XSETREF(self->status_code, value);
        }
    }
    if (self->start_response == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RequestTrace was not initialised");
        return NULL;
    }
    /* exc_info=None is not passed on, as the Python code does not */
    Py_ssize_t n = (nargs == 3 && args[2] == Py_None) ? 2 : nargs;
    return PyObject_Vectorcall(self->start_response, args, (size_t)n, NULL);
}

/* set_route(route): the matched URL rule names the span (what infratrace.web.set_route
 * does, with the name and attributes made once per method and rule by the
 * subclass's _route_entry and kept in its _routes). */
static PyObject *
rtrace_set_route(RequestTraceObject *self, PyObject *route)
{
    Py_INCREF(route);
    Py_XSETREF(self->route, route);
    if (self->span == NULL || self->method == NULL)
        Py_RETURN_NONE;
    PyObject *routes = PyObject_GetAttr((PyObject *)Py_TYPE(self), s_routes);
    if (routes == NULL)
        return NULL;
    PyObject *key = PyTuple_Pack(2, self->method, route);
    if (key == NULL) {
        Py_DECREF(routes);
        return NULL;
    }
    PyObject *found = PyDict_Check(routes) ? PyDict_GetItemWithError(routes, key) : NULL;
    Py_XINCREF(found);
    Py_DECREF(key);
    Py_DECREF(routes);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *make = PyObject_GetAttr((PyObject *)Py_TYPE(self), s_route_entry);
        if (make == NULL)
            return NULL;
        found = PyObject_CallFunctionObjArgs(make, self->method, route, NULL);
        Py_DECREF(make);
        if (found == NULL)
            return NULL;
    }
    if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2) {
        Py_DECREF(found);
        PyErr_SetString(PyExc_TypeError, "a route entry is (span name, attributes)");
        return NULL;
    }
    PyObject *name = PyTuple_GET_ITEM(found, 0), *attrs = PyTuple_GET_ITEM(found, 1);
    PyObject *span = self->span;
    int rc;
    if (SpanBase_Check(span) && PyDict_CheckExact(((SpanObject *)span)->attributes) && PyDict_Check(attrs)) {
        Py_INCREF(name);
        Py_XSETREF(((SpanObject *)span)->name, name);
        rc = PyDict_Update(((SpanObject *)span)->attributes, attrs);
    }
    else {
        rc = PyObject_SetAttr(span, s_name, name);
        if (rc == 0) {
            PyObject *res = PyObject_CallMethod(span, "set_attributes", "O", attrs);
            rc = res == NULL ? -1 : 0;
            Py_XDECREF(res);
        }
    }
    Py_DECREF(found);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* finish(exc=None): end the http: span once: 5xx or an exception -> error. Never
 * raises: finish_http_span swallows what goes wrong, as the Python code does. */
static PyObject *
rtrace_finish(RequestTraceObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "finish() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (self->finished || self->span == NULL)
        Py_RETURN_NONE;
    self->finished = 1;
    PyObject *exc = nargs == 1 && !IT_NONE(args[0]) ? args[0] : (self->exc ? self->exc : Py_None);
    PyObject *status = self->status_code ? self->status_code : Py_None;
    PyObject *span = self->span;
    Py_INCREF(span);
    Py_INCREF(exc);
    Py_INCREF(status);
    if (exc != Py_None && status == Py_None) {
        Py_DECREF(status);
        status = PyLong_FromLong(500); /* what the server answers when the exception reaches it */
        if (status == NULL) {
            PyErr_Clear();
            status = Py_None;
            Py_INCREF(status);
        }
    }
    /* The budget is not deactivated: it lives in the request's own context. */
    if (self->budget != NULL && Py_TYPE(self->budget) == &Budget_Type)
        report_drops(span, (BudgetObject *)self->budget);
    PyObject *call[3] = {span, status, exc};
    PyObject *res = finish_http_span(NULL, call, 3, NULL);
    if (res == NULL)
        PyErr_Clear();
    Py_XDECREF(res);
    Py_DECREF(span);
    Py_DECREF(exc);
    Py_DECREF(status);
    Py_RETURN_NONE;
}

static PyMethodDef rtrace_methods[] = {
    {"status_only", (PyCFunction)(void (*)(void))rtrace_status_only, METH_FASTCALL,
     "status_only(status, headers, exc_info=None): start_response that keeps the status code."},
    {"set_route", (PyCFunction)rtrace_set_route, METH_O, "set_route(route): name the span by the matched rule."},
    {"finish", (PyCFunction)(void (*)(void))rtrace_finish, METH_FASTCALL,
     "finish(exc=None): end the http: span, once."},
    {NULL},
};

static PyMemberDef rtrace_members[] = {
    {"span", T_OBJECT, offsetof(RequestTraceObject, span), 0, NULL},
    {"budget", T_OBJECT, offsetof(RequestTraceObject, budget), 0, NULL},
    {"options", T_OBJECT, offsetof(RequestTraceObject, options), 0, NULL},
    {"method", T_OBJECT, offsetof(RequestTraceObject, method), 0, NULL},
    {"_start_response", T_OBJECT, offsetof(RequestTraceObject, start_response), 0, NULL},
    {"status_code", T_OBJECT, offsetof(RequestTraceObject, status_code), 0, NULL},
    {"route", T_OBJECT, offsetof(RequestTraceObject, route), 0, NULL},
    {"exc", T_OBJECT, offsetof(RequestTraceObject, exc), 0, NULL},
    {"streamed", T_OBJECT, offsetof(RequestTraceObject, streamed), 0, NULL},
    {"finished", T_BOOL, offsetof(RequestTraceObject, finished), 0, NULL},
    {NULL},
};

static PyTypeObject RequestTraceBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "infratrace._speedups.RequestTraceBase",
    .tp_basicsize = sizeof(RequestTraceObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C core of a WSGI adapter's per-request state (infratrace_flask.RequestTrace).",
    .tp_traverse = (traverseproc)rtrace_traverse,
    .tp_clear = (inquiry)rtrace_clear,
    .tp_dealloc = (destructor)rtrace_dealloc,
    .tp_methods = rtrace_methods,
    .tp_members = rtrace_members,
    .tp_init = (initproc)rtrace_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *
monotonic_ns(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(now_ns());
}

static PyMethodDef span_module_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))begin, METH_FASTCALL | METH_KEYWORDS,
     "begin(name, attrs=None, *, kind=None, parent=None): the built-in tracer's begin()."},
    {"start_span", (PyCFunction)(void (*)(void))start_span, METH_FASTCALL | METH_KEYWORDS,
     "start_span(name, attrs=None, *, kind=None, parent=None): the built-in tracer's start_span()."},
    {"install", (PyCFunction)(void (*)(void))install, METH_VARARGS | METH_KEYWORDS,
     "Connect the C hot path to infratrace/_span.py (called once, at import)."},
    {"install_budget", install_budget, METH_VARARGS,
     "install_budget(var, counter): the ContextVar of the active budget and the refusal counter."},
    {"set_sink", (PyCFunction)(void (*)(void))set_sink, METH_VARARGS | METH_KEYWORDS,
     "set_sink(sink, pipeline=None): where ended spans go."},
    {"reseed", reseed, METH_NOARGS, "Reseed the id generator from os.urandom (after fork)."},
    {"parse_traceparent", (PyCFunction)(void (*)(void))parse_traceparent, METH_FASTCALL,
     "parse_traceparent(value, tracestate=''): a SpanContext, or None if the value is not valid."},
    {"install_context", install_context, METH_VARARGS,
     "install_context(span_context_type, clean_tracestate, parse_traceparent_py): connect parse_traceparent."},
    {"finish_http_span", (PyCFunction)(void (*)(void))finish_http_span, METH_FASTCALL | METH_KEYWORDS,
     "finish_http_span(span, status_code, exc=None, budget=None): infratrace.web.finish_http_span."},
    {"install_web", install_web, METH_O, "install_web(finish_http_span_py): the fallback of finish_http_span."},
    {"monotonic_ns", monotonic_ns, METH_NOARGS, "The clock spans are timed with (= time.perf_counter_ns())."},
    {NULL},
};

#define INTERN(var, text)                                     \
    do {                                                      \
        if ((var = PyUnicode_InternFromString(text)) == NULL) \
            return -1;                                        \
    } while (0)

int
it_span_module_init(PyObject *module)
{
    INTERN(s_used, "used");
    if ((g_one = PyLong_FromLong(1)) == NULL || (g_zero = PyLong_FromLong(0)) == NULL)
        return -1;
    INTERN(s_status_code, "http.response.status_code");
    INTERN(s_routes, "_routes");
    INTERN(s_route_entry, "_route_entry");
    INTERN(s_set_attribute, "set_attribute");
    INTERN(s_spans_dropped, "infratrace.spans_dropped");
    INTERN(s_limit, "limit");
    INTERN(s_tid, "_tid");
    INTERN(s_sid, "_sid");
    INTERN(s_ctx, "_ctx");
    INTERN(s_token, "_token");
    INTERN(s_wake_at, "_wake_at");
    INTERN(s_after_append, "_after_append");
    INTERN(s_kind, "kind");
    INTERN(s_name, "name");
    INTERN(s_attrs, "attrs");
    INTERN(s_parent, "parent");
    INTERN(s_result, "result");
    INTERN(s_status, "status");
    INTERN(s_code, "code");
    INTERN(s_message, "message");
    INTERN(g_internal, "internal");
    INTERN(g_ok, "ok");
    INTERN(g_empty, "");
    if ((g_kwnames_start = PyTuple_Pack(2, s_kind, s_parent)) == NULL)
        return -1;
#if !defined(__linux__)
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return -1;
    g_perf_counter_ns = PyObject_GetAttrString(time_module, "perf_counter_ns");
    Py_DECREF(time_module);
    if (g_perf_counter_ns == NULL)
        return -1;
#endif
    PyObject *seeded = reseed(module, NULL);
    if (seeded == NULL)
        return -1;
    Py_DECREF(seeded);
    if (PyType_Ready(&SpanBase_Type) < 0 || PyType_Ready(&Budget_Type) < 0 || PyType_Ready(&ContextBase_Type) < 0 ||
        PyType_Ready(&RequestTraceBase_Type) < 0)
        return -1;
    Py_INCREF(&RequestTraceBase_Type);
    if (PyModule_AddObject(module, "RequestTraceBase", (PyObject *)&RequestTraceBase_Type) < 0) {
        Py_DECREF(&RequestTraceBase_Type);
        return -1;
    }
    Py_INCREF(&ContextBase_Type);
    if (PyModule_AddObject(module, "ContextBase", (PyObject *)&ContextBase_Type) < 0) {
        Py_DECREF(&ContextBase_Type);
        return -1;
    }
    Py_INCREF(&Budget_Type);
    if (PyModule_AddObject(module, "SpanBudget", (PyObject *)&Budget_Type) < 0) {
        Py_DECREF(&Budget_Type);
        return -1;
    }
    Py_INCREF(&SpanBase_Type);
    if (PyModule_AddObject(module, "SpanBase", (PyObject *)&SpanBase_Type) < 0) {
        Py_DECREF(&SpanBase_Type);
        return -1;
    }
    return PyModule_AddFunctions(module, span_module_methods);
}
