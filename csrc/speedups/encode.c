/* The stable-schema JSON line of an ended span in C: StableLines, the counterpart of
 * StableJSONLine.__call__ in infratrace/_fields.py, which stays the reference.
 *
 * The C code writes the common case: a SpanBase whose name and kind are str, whose
 * attributes are a dict of str keys and str / 64-bit int / bool / None / float values
 * (floats whose repr has no exponent: orjson, which the Python code uses, writes
 * 2.5e-05 as 0.000025), without events, with the status None or (str, int, str).
 * Anything else is handed to the fallback (the StableJSONLine instance), so both
 * produce the same line byte for byte: the test suite compares them
 * (tests/core/test_speedups_encode.py). */
#include "speedups.h"
#include <math.h>
#include <string.h>
#include <time.h>

/* -- a growable output buffer --------------------------------------------------- */
/* The JSON text of recently written ASCII strs, by object: attribute keys and most
 * values (a request's method, scheme, host, route, the view's module...) are the same
 * str objects span after span. An entry holds a reference to its str, so the address
 * cannot be reused by another object while the entry stands. */
#define STR_CACHE_SIZE 512   /* entries, a power of two */
#define STR_CACHE_TEXT 54    /* bytes of JSON text, quotes included */
typedef struct {
    PyObject *key;           /* a str, or NULL */
    uint8_t len;
    uint8_t escaped;         /* the text holds an escape (no use where raw text is required) */
    char text[STR_CACHE_TEXT];
} StrCacheEntry;

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    StrCacheEntry *cache;    /* STR_CACHE_SIZE entries, or NULL */
} Writer;

static inline StrCacheEntry *
str_cache_slot(StrCacheEntry *cache, PyObject *s)
{
    uintptr_t a = (uintptr_t)s;
    return &cache[((a >> 4) ^ (a >> 13)) & (STR_CACHE_SIZE - 1)];
}

static void
str_cache_clear(StrCacheEntry *cache)
{
    if (cache == NULL)
        return;
    for (int i = 0; i < STR_CACHE_SIZE; i++)
        Py_CLEAR(cache[i].key);
}

#define BUFFER_START (32 * 1024)
#define BUFFER_KEEP (1024 * 1024) /* a larger buffer is freed after the call */

static int
writer_grow(Writer *w, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX / 2 - w->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = w->len + extra;
    Py_ssize_t cap = w->cap ? w->cap : BUFFER_START;
    while (cap < need)
        cap *= 2;
    char *buf = PyMem_Realloc(w->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

/* Room for extra more bytes. */
static inline int
reserve(Writer *w, Py_ssize_t extra)
{
    if (w->cap - w->len >= extra)
        return 0;
    return writer_grow(w, extra);
}

/* The caller has reserved the room. */
static inline void
put_raw(Writer *w, const char *text, Py_ssize_t n)
{
    memcpy(w->buf + w->len, text, (size_t)n);
    w->len += n;
}

/* A string literal: a fixed-size copy. */
#define PUT_LITERAL(w, text)                                      \
    do {                                                          \
        memcpy((w)->buf + (w)->len, (text), sizeof(text) - 1);    \
        (w)->len += (Py_ssize_t)(sizeof(text) - 1);               \
    } while (0)

static const char HEX[] = "0123456789abcdef";
static char HEX2[512];    /* "000102...ff" */
static char DIGITS2[200]; /* "000102...99" */

static void
init_tables(void)
{
    for (int i = 0; i < 256; i++) {
        HEX2[2 * i] = HEX[i >> 4];
        HEX2[2 * i + 1] = HEX[i & 0xf];
    }
    for (int i = 0; i < 100; i++) {
        DIGITS2[2 * i] = (char)('0' + i / 10);
        DIGITS2[2 * i + 1] = (char)('0' + i % 10);
    }
}

static inline void
put_hex64(Writer *w, uint64_t value)
{
    char *out = w->buf + w->len;
    for (int i = 14; i >= 0; i -= 2) {
        memcpy(out + i, HEX2 + 2 * (value & 0xff), 2);
        value >>= 8;
    }
    w->len += 16;
}

/* Decimal text of value into text (at least 21 bytes); its length. */
static inline int
format_i64(char *text, int64_t value)
{
    char digits[20];
    char *p = digits + sizeof(digits);
    uint64_t u = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    while (u >= 100) {
        p -= 2;
        memcpy(p, DIGITS2 + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, DIGITS2 + 2 * u, 2);
    }
    else
        *--p = (char)('0' + u);
    int n = (int)(digits + sizeof(digits) - p);
    int len = 0;
    if (value < 0)
        text[len++] = '-';
    memcpy(text + len, p, (size_t)n);
    return len + n;
}

/* A str ready for the PyUnicode_* macros (3.11 may still meet a legacy str). */
static inline int
str_ready(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    (void)s;
    return 1;
}

/* -- JSON strings, escaped like orjson ------------------------------------------ */
/* 0: written as it is; 'u': \u00XX; else the character after the backslash. */
static char ESCAPE[128];

static void
init_escape_table(void)
{
    for (int c = 0; c < 0x20; c++)
        ESCAPE[c] = 'u';
    ESCAPE['\b'] = 'b';
    ESCAPE['\t'] = 't';
    ESCAPE['\n'] = 'n';
    ESCAPE['\f'] = 'f';
    ESCAPE['\r'] = 'r';
    ESCAPE['"'] = '"';
    ESCAPE['\\'] = '\\';
}

/* Result codes of the writers: OK, FALLBACK (hand the span to the Python code) or
 * -1 with an exception set (no memory). */
#define OK 0
#define FALLBACK 1

#define SPACES 0x2020202020202020ULL

/* Whether one of eight ASCII bytes (each below 0x80) is below 0x20, '"' or '\\'. */
static inline int
needs_escape8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t control = (x - ones * 0x20) & ~x;
    uint64_t found = control | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    return (found & highs) != 0;
}

/* The JSON escape of an ASCII character c whose ESCAPE entry is e (a short escape
 * letter, or 'u' for \u00XX); returns the new end of the output. */
static inline char *
put_escape(char *out, unsigned char c, char e)
{
    *out++ = '\\';
    if (e == 'u') {
        *out++ = 'u';
        *out++ = '0';
        *out++ = '0';
        *out++ = HEX[c >> 4];
        *out++ = HEX[c & 0xf];
    }
    else
        *out++ = e;
    return out;
}

/* The str s as a quoted JSON string, UTF-8. raw_only: the Python code writes s
 * between quotes without escaping it (kind, status), so a character that needs an
 * escape means the fallback. A lone surrogate (not UTF-8 encodable) means the
 * fallback too. *nonascii is set when a non-ASCII byte is written. */
static int put_str_text(Writer *w, PyObject *s, int raw_only, int *nonascii);

static int
put_str(Writer *w, PyObject *s, int raw_only, int *nonascii)
{
    StrCacheEntry *entry = NULL;
    if (w->cache != NULL) {
        entry = str_cache_slot(w->cache, s);
        if (entry->key == s) {
            if (raw_only && entry->escaped)
                return FALLBACK;
            if (reserve(w, entry->len) < 0)
                return -1;
            put_raw(w, entry->text, entry->len);
            return OK;
        }
    }
    Py_ssize_t start = w->len;
    int rc = put_str_text(w, s, raw_only, nonascii);
    if (rc != OK || entry == NULL || !PyUnicode_IS_ASCII(s))
        return rc;
    Py_ssize_t len = w->len - start;
    if (len > STR_CACHE_TEXT)
        return OK;
    Py_INCREF(s);
    Py_XSETREF(entry->key, s);
    entry->len = (uint8_t)len;
    entry->escaped = len != PyUnicode_GET_LENGTH(s) + 2;
    memcpy(entry->text, w->buf + start, (size_t)len);
    return OK;
}

/* put_str without the cache. */
static int
put_str_text(Writer *w, PyObject *s, int raw_only, int *nonascii)
{
    if (!str_ready(s))
        return FALLBACK;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n > (PY_SSIZE_T_MAX - 10) / 6)
        return FALLBACK;
    /* the worst case: every character as \u00XX; 8 more for the last 8-byte store */
    if (reserve(w, 6 * n + 10) < 0)
        return -1;
    char *out = w->buf + w->len;
    *out++ = '"';
    if (PyUnicode_IS_ASCII(s)) {
        const unsigned char *p = (const unsigned char *)PyUnicode_DATA(s);
        const unsigned char *end = p + n;
        const int compact = PyUnicode_IS_COMPACT_ASCII(s);
        (void)compact;
        while (p < end) {
            /* eight bytes at a time while none needs an escape; the last few
             * padded with spaces, which need none */
            Py_ssize_t left = end - p;
            uint64_t x;
            if (left >= 8)
                memcpy(&x, p, 8);
#if PY_LITTLE_ENDIAN
            else if (compact) {
                /* The eight bytes that end the text (a compact str's text follows
                 * its header, so they are the object's), shifted: one load, where
                 * copying the bytes one by one stalls the load that follows. */
                uint64_t last;
                memcpy(&last, end - 8, 8);
                x = (last >> (8 * (8 - left))) | (SPACES << (8 * left));
            }
#endif
            else {
                x = SPACES;
                memcpy(&x, p, (size_t)left);
            }
            if (!needs_escape8(x)) {
                memcpy(out, &x, 8); /* room: see the reserve above */
                Py_ssize_t step = left < 8 ? left : 8;
                out += step;
                p += step;
                continue;
            }
            unsigned char c = *p++;
            char e = ESCAPE[c];
            if (!e) {
                *out++ = (char)c;
                continue;
            }
            if (raw_only)
                return FALLBACK;
            out = put_escape(out, c, e);
        }
    }
    else {
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x80) {
                char e = ESCAPE[c];
                if (!e) {
                    *out++ = (char)c;
                    continue;
                }
                if (raw_only)
                    return FALLBACK;
                out = put_escape(out, (unsigned char)c, e);
            }
            else if (c < 0x800) {
                *out++ = (char)(0xc0 | (c >> 6));
                *out++ = (char)(0x80 | (c & 0x3f));
            }
            else if (c < 0x10000) {
                if (c >= 0xd800 && c <= 0xdfff)
                    return FALLBACK;
                *out++ = (char)(0xe0 | (c >> 12));
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *out++ = (char)(0x80 | (c & 0x3f));
            }
            else {
                *out++ = (char)(0xf0 | (c >> 18));
                *out++ = (char)(0x80 | ((c >> 12) & 0x3f));
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *out++ = (char)(0x80 | (c & 0x3f));
            }
        }
        *nonascii = 1;
    }
    *out++ = '"';
    w->len = out - w->buf;
    return OK;
}

/* -- attribute values ----------------------------------------------------------- */
/* repr(value) without _Py_dg_dtoa (which costs ~250 ns) for the common floats: those
 * that are the nearest double to a decimal m / 10**k with |m| < 10**15 (so at most 15
 * significant digits), between 1e-4 and 1e15. Any two decimals of at most 15
 * significant digits round to different doubles (DBL_DIG), so that decimal is the
 * shortest one that round-trips, i.e. the digits repr writes; in this range repr
 * writes them without an exponent, with ".0" for an integer. Returns the length
 * written to text (at least 24 bytes), or 0: use PyOS_double_to_string. */
static int
format_short_float(char *text, double value)
{
    static const double POW10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = value < 0 ? -value : value;
    if (!(a >= 1e-4 && a < 1e15)) /* also nan */
        return 0;
    for (int k = 0; k < 16; k++) {
        double scaled = a * POW10[k];
        if (scaled >= 1e15)
            return 0;
        int64_t m = (int64_t)(scaled + 0.5);
        if ((double)m / POW10[k] != a)
            continue;
        /* a is the nearest double to m / 10**k: write that decimal. */
        char digits[24];
        int n = format_i64(digits, m);
        int len = 0;
        if (value < 0)
            text[len++] = '-';
        if (n <= k) { /* 0.000ddd */
            text[len++] = '0';
            text[len++] = '.';
            for (int i = n; i < k; i++)
                text[len++] = '0';
            memcpy(text + len, digits, (size_t)n);
            len += n;
        }
        else {
            memcpy(text + len, digits, (size_t)(n - k));
            len += n - k;
            text[len++] = '.';
            if (k == 0)
                text[len++] = '0';
            else {
                memcpy(text + len, digits + n - k, (size_t)k);
                len += k;
            }
        }
        while (k > 1 && text[len - 1] == '0' && text[len - 2] != '.') { /* m had trailing zeros */
            len--;
            k--;
        }
        return len;
    }
    return 0;
}

/* A float as Python's repr. plain_only: only when that is also what orjson writes
 * (no exponent, not nan or inf), else FALLBACK. */
static int
put_float(Writer *w, double value, int plain_only)
{
    if (reserve(w, 32) < 0)
        return -1;
    if (value == 0.0) {
        if (signbit(value))
            PUT_LITERAL(w, "-0.0");
        else
            PUT_LITERAL(w, "0.0");
        return OK;
    }
    int n = format_short_float(w->buf + w->len, value);
    if (n > 0) {
        w->len += n;
        return OK;
    }
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    size_t len = strlen(text);
    if (plain_only && strpbrk(text, "eni") != NULL) {
        PyMem_Free(text);
        return FALLBACK;
    }
    if (reserve(w, (Py_ssize_t)len) < 0) {
        PyMem_Free(text);
        return -1;
    }
    put_raw(w, text, (Py_ssize_t)len);
    PyMem_Free(text);
    return OK;
}

/* duration_ms: repr(ns / 1e6). For 100 <= |ns| < 10**15 the double is the nearest
 * to the decimal ns / 10**6, of at most 15 significant digits, so (see
 * format_short_float) repr writes that decimal: the digits of ns with a point. */
static int
put_duration(Writer *w, int64_t ns)
{
    uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    if (u < 100 || u >= 1000000000000000ULL)
        return put_float(w, (double)ns / 1e6, 0);
    if (reserve(w, 32) < 0)
        return -1;
    char *out = w->buf + w->len;
    int len = 0;
    if (ns < 0)
        out[len++] = '-';
    len += format_i64(out + len, (int64_t)(u / 1000000));
    out[len++] = '.';
    uint32_t frac = (uint32_t)(u % 1000000);
    if (frac == 0)
        out[len++] = '0';
    else {
        int digits = 6;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        for (int i = digits - 1; i >= 0; i--) {
            out[len + i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        len += digits;
    }
    w->len += len;
    return OK;
}

static int
put_value(Writer *w, PyObject *v, int *nonascii)
{
    if (PyUnicode_CheckExact(v))
        return put_str(w, v, 0, nonascii);
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return FALLBACK; /* beyond 64 bits: the Python code's business */
        }
        if (reserve(w, 21) < 0)
            return -1;
        w->len += format_i64(w->buf + w->len, (int64_t)value);
        return OK;
    }
    if (PyFloat_CheckExact(v))
        return put_float(w, PyFloat_AS_DOUBLE(v), 1);
    if (reserve(w, 5) < 0)
        return -1;
    if (v == Py_None)
        PUT_LITERAL(w, "null");
    else if (v == Py_True)
        PUT_LITERAL(w, "true");
    else if (v == Py_False)
        PUT_LITERAL(w, "false");
    else
        return FALLBACK;
    return OK;
}

static PyObject *s_service_key; /* "service" */
static PyObject *s_target_key;  /* "target" */

/* -- StableLines ------------------------------------------------------------------ */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;  /* span -> str: the pure-Python StableJSONLine */
    char *tail;          /* UTF-8: ,"resource":...,"node":...[,"flag":...] */
    Py_ssize_t tail_len;
    char *service;       /* UTF-8: the JSON of the resource's service name */
    Py_ssize_t service_len;
    int constant_nonascii; /* tail or service has non-ASCII bytes */
    char *buf;           /* the output buffer, reused from call to call */
    Py_ssize_t cap;
    int busy;            /* buf is in use (a fallback calling back into this object) */
    int64_t utc_second;  /* the second utc_text shows, -1: none */
    char utc_text[24];   /* YYYY-MM-DDTHH:MM:SS */
    StrCacheEntry *str_cache; /* STR_CACHE_SIZE entries, allocated at the first use */
} StableLinesObject;

static int
utc_seconds_text(StableLinesObject *self, int64_t second)
{
    if (second == self->utc_second)
        return OK;
    time_t t = (time_t)second;
    struct tm tm;
#if defined(_WIN32)
    if (gmtime_s(&tm, &t) != 0)
        return FALLBACK;
#else
    if (gmtime_r(&t, &tm) == NULL)
        return FALLBACK;
#endif
    long long year = (long long)tm.tm_year + 1900;
    if (year < 1000 || year > 9999)
        return FALLBACK;
    int fields[5] = {tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
    for (int i = 0; i < 5; i++)
        if (fields[i] < 0 || fields[i] > 99)
            return FALLBACK;
    char *out = self->utc_text; /* what strftime("%Y-%m-%dT%H:%M:%S") writes */
    out[0] = (char)('0' + year / 1000);
    out[1] = (char)('0' + year / 100 % 10);
    out[2] = (char)('0' + year / 10 % 10);
    out[3] = (char)('0' + year % 10);
    static const char separators[] = "--T::";
    for (int i = 0; i < 5; i++) {
        out[4 + 3 * i] = separators[i];
        out[5 + 3 * i] = (char)('0' + fields[i] / 10);
        out[6 + 3 * i] = (char)('0' + fields[i] % 10);
    }
    out[19] = '\0';
    self->utc_second = second;
    return OK;
}

/* One line (without its newline) appended to w: OK, FALLBACK (w may hold part of
 * the line: the caller truncates it) or -1 with an exception set. */
static int
write_line(StableLinesObject *self, Writer *w, PyObject *obj, int64_t offset, int *nonascii)
{
    if (!SpanBase_Check(obj))
        return FALLBACK;
    SpanObject *s = (SpanObject *)obj;
    PyObject *name = s->name, *kind = s->kind, *attrs = s->attributes, *st = s->status;
    if (name == NULL || !PyUnicode_CheckExact(name) || kind == NULL || !PyUnicode_CheckExact(kind) || attrs == NULL ||
        !PyDict_CheckExact(attrs))
        return FALLBACK;
    if (!IT_NONE(s->events) && !(PyList_CheckExact(s->events) && PyList_GET_SIZE(s->events) == 0))
        return FALLBACK;
    long long code = 0;
    if (!IT_NONE(st)) {
        if (!PyTuple_CheckExact(st) || PyTuple_GET_SIZE(st) != 3 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(st, 0)) ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(st, 2)))
            return FALLBACK;
        PyObject *c = PyTuple_GET_ITEM(st, 1);
        if (!PyLong_CheckExact(c) && !PyBool_Check(c))
            return FALLBACK;
        int overflow = 0;
        code = PyLong_AsLongLongAndOverflow(c, &overflow);
        if (overflow || (code == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return FALLBACK;
        }
    }

    /* Times: the Python code slices the decimal text of start and end. Start must
     * have at least 10 digits (its seconds part is start[:-9]); the rest is plain
     * int64 arithmetic, else the fallback. */
    int64_t start, end, duration;
    if (__builtin_add_overflow(s->t0, offset, &start) || __builtin_add_overflow(s->t1, offset, &end) ||
        __builtin_sub_overflow(s->t1, s->t0, &duration))
        return FALLBACK;
    if (start < 1000000000)
        return FALLBACK;
    if (utc_seconds_text(self, start / 1000000000) != OK)
        return FALLBACK;

    /* service and target: looked up here (they come before the attributes in the
     * line); every other key and value is checked as it is written, and anything
     * that is not simple sends the whole line to the fallback (the caller drops what
     * was written of it). */
    PyObject *key, *value;
    PyObject *service = PyDict_GetItemWithError(attrs, s_service_key);
    PyObject *target = service == NULL && PyErr_Occurred() ? NULL : PyDict_GetItemWithError(attrs, s_target_key);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return FALLBACK;
    }
    if (service == Py_None || (service != NULL && PyUnicode_CheckExact(service) && PyUnicode_GET_LENGTH(service) == 0))
        service = NULL; /* falsy: the resource's service name */
    if (service != NULL && !PyUnicode_CheckExact(service))
        return FALLBACK;
    if (target == Py_None)
        target = NULL;
    if (target != NULL && !PyUnicode_CheckExact(target))
        return FALLBACK;

    int rc;
    if (reserve(w, 128) < 0)
        return -1;
    PUT_LITERAL(w, "{\"trace_id\":\"");
    put_hex64(w, s->tid_hi);
    put_hex64(w, s->tid_lo);
    PUT_LITERAL(w, "\",\"span_id\":\"");
    put_hex64(w, s->sid);
    PUT_LITERAL(w, "\",\"parent_span_id\":\"");
    if (s->pid)
        put_hex64(w, s->pid);
    PUT_LITERAL(w, "\",\"name\":");
    if ((rc = put_str(w, name, 0, nonascii)) != OK)
        return rc;
    if (reserve(w, 8) < 0)
        return -1;
    PUT_LITERAL(w, ",\"kind\":");
    if ((rc = put_str(w, kind, 1, nonascii)) != OK)
        return rc;
    if (reserve(w, 16 + self->service_len) < 0)
        return -1;
    PUT_LITERAL(w, ",\"service_name\":");
    if (service == NULL)
        put_raw(w, self->service, self->service_len);
    else if ((rc = put_str(w, service, 0, nonascii)) != OK)
        return rc;
    if (reserve(w, 16) < 0)
        return -1;
    PUT_LITERAL(w, ",\"target\":");
    if (target == NULL)
        PUT_LITERAL(w, "\"\"");
    else if ((rc = put_str(w, target, 0, nonascii)) != OK)
        return rc;
    if (reserve(w, 64) < 0)
        return -1;
    if (IT_NONE(st))
        PUT_LITERAL(w, ",\"status\":\"ok\",\"status_code\":0,\"status_message\":\"\"");
    else {
        PUT_LITERAL(w, ",\"status\":");
        if ((rc = put_str(w, PyTuple_GET_ITEM(st, 0), 1, nonascii)) != OK)
            return rc;
        if (reserve(w, 64) < 0)
            return -1;
        PUT_LITERAL(w, ",\"status_code\":");
        w->len += format_i64(w->buf + w->len, (int64_t)code);
        PUT_LITERAL(w, ",\"status_message\":");
        if ((rc = put_str(w, PyTuple_GET_ITEM(st, 2), 0, nonascii)) != OK)
            return rc;
    }

    char start_text[24], end_text[24];
    int start_len = format_i64(start_text, start), end_len = format_i64(end_text, end);
    if (reserve(w, 256) < 0)
        return -1;
    PUT_LITERAL(w, ",\"start_time_unix_nano\":");
    put_raw(w, start_text, start_len);
    PUT_LITERAL(w, ",\"end_time_unix_nano\":");
    put_raw(w, end_text, end_len);
    PUT_LITERAL(w, ",\"duration_ms\":");
    /* Python: repr((t1 - t0) / 1e6), the int converted to the nearest double. */
    if ((rc = put_duration(w, duration)) != OK)
        return rc;
    if (reserve(w, 128) < 0)
        return -1;
    PUT_LITERAL(w, ",\"start_ms\":");
    put_raw(w, start_text, start_len - 6); /* start has 10 digits or more */
    PUT_LITERAL(w, ",\"end_ms\":");
    if (end_len > 6) /* end[:-6]: "" for a short text, as the slice gives */
        put_raw(w, end_text, end_len - 6);
    PUT_LITERAL(w, ",\"timestamp\":\"");
    put_raw(w, self->utc_text, 19);
    *(w->buf + w->len++) = '.';
    put_raw(w, start_text + start_len - 9, 6);
    PUT_LITERAL(w, "Z\",\"attributes\":{");

    int first = 1;
    Py_ssize_t pos = 0;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key))
            return FALLBACK;
        if (reserve(w, 1) < 0)
            return -1;
        if (!first)
            *(w->buf + w->len++) = ',';
        first = 0;
        if ((rc = put_str(w, key, 0, nonascii)) != OK)
            return rc;
        if (reserve(w, 1) < 0)
            return -1;
        *(w->buf + w->len++) = ':';
        if ((rc = put_value(w, value, nonascii)) != OK)
            return rc;
    }
    if (reserve(w, self->tail_len + 2) < 0)
        return -1;
    *(w->buf + w->len++) = '}';
    put_raw(w, self->tail, self->tail_len);
    *(w->buf + w->len++) = '}';
    return OK;
}

/* The fallback's line for a span: a new reference to a str, or NULL. */
static PyObject *
fallback_line(StableLinesObject *self, PyObject *span)
{
    PyObject *fallback = self->fallback;
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StableLines has no fallback");
        return NULL;
    }
    Py_INCREF(fallback);
    PyObject *line = PyObject_CallOneArg(fallback, span);
    Py_DECREF(fallback);
    if (line != NULL && !PyUnicode_Check(line)) {
        PyErr_Format(PyExc_TypeError, "the fallback returned %.100s, not str", Py_TYPE(line)->tp_name);
        Py_CLEAR(line);
    }
    return line;
}

/* The writer of a call: the object's own buffer, or a private one when the buffer
 * is in use (a fallback that calls back into this object). */
static void
writer_acquire(StableLinesObject *self, Writer *w, int *owned)
{
    w->len = 0;
    if (self->str_cache == NULL)
        self->str_cache = PyMem_Calloc(STR_CACHE_SIZE, sizeof(StrCacheEntry)); /* NULL: no cache */
    w->cache = self->str_cache;
    if (self->busy) {
        w->buf = NULL;
        w->cap = 0;
        *owned = 0;
        return;
    }
    self->busy = 1;
    w->buf = self->buf;
    w->cap = self->cap;
    self->buf = NULL;
    self->cap = 0;
    *owned = 1;
}

static void
writer_release(StableLinesObject *self, Writer *w, int owned)
{
    if (owned && w->cap <= BUFFER_KEEP && self->buf == NULL) {
        self->buf = w->buf;
        self->cap = w->cap;
    }
    else
        PyMem_Free(w->buf);
    if (owned)
        self->busy = 0;
    w->buf = NULL;
    w->cap = 0;
}

/* The offset argument: 0 and *value, or 1 when it is beyond 64 bits (every span
 * then goes to the fallback), or -1 with an exception set. */
static int
parse_offset(PyObject *arg, int64_t *value)
{
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "offset must be an int, not %.100s", Py_TYPE(arg)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *value = (int64_t)v;
    return overflow ? 1 : 0;
}

static PyObject *
stable_line(StableLinesObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "line() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int64_t offset;
    int big = parse_offset(args[1], &offset);
    if (big < 0)
        return NULL;
    Writer w;
    int owned, nonascii = 0, rc = FALLBACK;
    writer_acquire(self, &w, &owned);
    if (!big)
        rc = write_line(self, &w, args[0], offset, &nonascii);
    PyObject *result = NULL;
    if (rc == OK) {
        if (nonascii || self->constant_nonascii)
            result = PyUnicode_DecodeUTF8(w.buf, w.len, NULL);
        else if ((result = PyUnicode_New(w.len, 127)) != NULL)
            memcpy(PyUnicode_DATA(result), w.buf, (size_t)w.len);
    }
    writer_release(self, &w, owned);
    if (rc == FALLBACK)
        result = fallback_line(self, args[0]);
    return result;
}

static PyObject *
stable_chunk(StableLinesObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "chunk() takes exactly 4 arguments (%zd given)", nargs);
        return NULL;
    }
    /* Slice bounds as Python takes them: negative from the end, clipped. */
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], NULL);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t stop = PyNumber_AsSsize_t(args[2], NULL);
    if (stop == -1 && PyErr_Occurred())
        return NULL;
    int64_t offset;
    int big = parse_offset(args[3], &offset);
    if (big < 0)
        return NULL;
    /* spans[start:stop], as a list of its own: a fallback may change spans. */
    PyObject *part;
    if (PyList_Check(args[0])) {
        PySlice_AdjustIndices(PyList_GET_SIZE(args[0]), &start, &stop, 1);
        part = PyList_GetSlice(args[0], start, stop);
    }
    else
        part = PySequence_GetSlice(args[0], start, stop);
    if (part == NULL)
        return NULL;
    PyObject *items = PySequence_Fast(part, "spans must be a sequence");
    Py_DECREF(part);
    if (items == NULL)
        return NULL;

    Writer w;
    int owned, nonascii = 0;
    PyObject *result = NULL;
    writer_acquire(self, &w, &owned);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *span = PySequence_Fast_GET_ITEM(items, i);
        Py_ssize_t line_start = w.len;
        int rc = big ? FALLBACK : write_line(self, &w, span, offset, &nonascii);
        if (rc < 0)
            goto done;
        if (rc == FALLBACK) {
            w.len = line_start;
            PyObject *line = fallback_line(self, span);
            if (line == NULL)
                goto done;
            Py_ssize_t size;
            const char *utf8 = PyUnicode_AsUTF8AndSize(line, &size);
            PyObject *encoded = NULL;
            if (utf8 == NULL) { /* lone surrogates: "replace", as str.encode does */
                PyErr_Clear();
                encoded = PyUnicode_AsEncodedString(line, "utf-8", "replace");
                if (encoded == NULL) {
                    Py_DECREF(line);
                    goto done;
                }
                utf8 = PyBytes_AS_STRING(encoded);
                size = PyBytes_GET_SIZE(encoded);
            }
            if (reserve(&w, size) < 0) {
                Py_XDECREF(encoded);
                Py_DECREF(line);
                goto done;
            }
            put_raw(&w, utf8, size);
            Py_XDECREF(encoded);
            Py_DECREF(line);
        }
        if (reserve(&w, 1) < 0)
            goto done;
        w.buf[w.len++] = '\n';
    }
    if (n == 0) /* "\n".join([]) + "\n" */
        result = PyBytes_FromStringAndSize("\n", 1);
    else
        result = PyBytes_FromStringAndSize(w.buf, w.len);
done:
    writer_release(self, &w, owned);
    Py_DECREF(items);
    return result;
}

/* A malloc'd UTF-8 copy of a str argument. */
static int
copy_utf8(PyObject *text, const char *what, char **out, Py_ssize_t *len, int *nonascii)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what, Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL)
        return -1;
    char *copy = PyMem_Malloc(size ? (size_t)size : 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, utf8, (size_t)size);
    *out = copy;
    *len = size;
    if (!PyUnicode_IS_ASCII(text))
        *nonascii = 1;
    return 0;
}

static int stable_clear(StableLinesObject *self);

static PyObject *
stable_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"tail", "service_json", "fallback", NULL};
    PyObject *tail, *service, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:StableLines", keywords, &tail, &service, &fallback))
        return NULL;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    StableLinesObject *self = (StableLinesObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->utc_second = -1;
    if (copy_utf8(tail, "tail", &self->tail, &self->tail_len, &self->constant_nonascii) < 0 ||
        copy_utf8(service, "service_json", &self->service, &self->service_len, &self->constant_nonascii) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(fallback);
    self->fallback = fallback;
    return (PyObject *)self;
}

static int
stable_traverse(StableLinesObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    return 0;
}

static int
stable_clear(StableLinesObject *self)
{
    Py_CLEAR(self->fallback);
    str_cache_clear(self->str_cache);
    return 0;
}

static void
stable_dealloc(StableLinesObject *self)
{
    PyObject_GC_UnTrack(self);
    stable_clear(self);
    PyMem_Free(self->tail);
    PyMem_Free(self->service);
    PyMem_Free(self->buf);
    PyMem_Free(self->str_cache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef stable_methods[] = {
    {"line", (PyCFunction)(void (*)(void))stable_line, METH_FASTCALL,
     "line(span, offset): the span's stable JSON line, without its newline (offset: the wall-clock offset in ns)."},
    {"chunk", (PyCFunction)(void (*)(void))stable_chunk, METH_FASTCALL,
     "chunk(spans, start, stop, offset): the lines of spans[start:stop], each followed by a newline, as UTF-8."},
    {NULL},
};

static PyTypeObject StableLines_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "infratrace._speedups.StableLines",
    .tp_basicsize = sizeof(StableLinesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "StableLines(tail, service_json, fallback): the stable-schema JSON line encoder "
              "(StableJSONLine in C; spans it does not handle go to fallback).",
    .tp_traverse = (traverseproc)stable_traverse,
    .tp_clear = (inquiry)stable_clear,
    .tp_dealloc = (destructor)stable_dealloc,
    .tp_methods = stable_methods,
    .tp_new = stable_new,
};

int
it_encode_module_init(PyObject *module)
{
    init_escape_table();
    init_tables();
    if ((s_service_key = PyUnicode_InternFromString("service")) == NULL ||
        (s_target_key = PyUnicode_InternFromString("target")) == NULL)
        return -1;
    if (PyType_Ready(&StableLines_Type) < 0)
        return -1;
    Py_INCREF(&StableLines_Type);
    if (PyModule_AddObject(module, "StableLines", (PyObject *)&StableLines_Type) < 0) {
        Py_DECREF(&StableLines_Type);
        return -1;
    }
    return 0;
}
