/* The receiver's hot loop: one remote-write series' labels and samples read from its bytes, the samples straight to
 * the message contract's JSON text.
 *
 * label_pairs(series) -> [(name, value), ...] | None: a 1.0 series' labels, in their order (see below).
 * samples_json(series) -> (text, count, first_ts, last_ts, stale) | None
 *     series: one TimeSeries message, serialized (ts.SerializeToString(): upb writes it in C, no Python object per
 *     sample). Its samples are field 2 in both remote-write messages (prometheus.TimeSeries and
 *     io.prometheus.write.v2.TimeSeries), each a Sample {double value = 1; int64 timestamp = 2}; every other field
 *     is skipped.
 *     text: b'[[ts,"value"],...]' -- the "samples" of common.messages, each value written as Prometheus' query API
 *     writes it (Go's FormatFloat(v, 'f', -1, 64)); staleness markers left out and counted in `stale`;
 *     first_ts and last_ts: the smallest and largest timestamp kept (0 and 0 when none is).
 *     None when a value needs what this loop does not do (dtoa's shortest text has an exponent: from 1e16 up, or
 *     below 1e-4 with more than 15 digits) or the bytes hold what upb would not write (a group): the caller's Python
 *     loop (decode._samples) then takes the series.
 *
 * Exactly decode._samples' output, sample for sample (tests/unit/test_receive_samples.py compares the two on
 * random doubles). Why C: in Python these loops were four fifths of a request's decoding (a upb wrapper per label
 * and per sample, a tuple and a str per sample, then orjson walking them again).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "reads protobuf's little-endian doubles as they are: elsewhere the build is skipped and the Python loop runs"
#endif

/* Prometheus' staleness marker (decode.STALE_NAN_BITS). */
#define STALE_NAN_BITS 0x7FF0000000000002ULL
#define UNUSUAL (-1)
#define PY_ERROR (-2)

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} buffer;

static int reserve(buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) cap *= 2;
    char *grown = PyMem_Realloc(b->buf, cap);
    if (grown == NULL) { PyErr_NoMemory(); return -1; }
    b->buf = grown;
    b->cap = cap;
    return 0;
}

static Py_ssize_t write_uint(unsigned long long u, char *out) {
    char tmp[24];
    Py_ssize_t k = 0, n = 0;
    do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u > 0);
    while (k > 0) out[n++] = tmp[--k];
    return n;
}

static Py_ssize_t write_int(long long v, char *out) {
    if (v >= 0) return write_uint((unsigned long long)v, out);
    out[0] = '-';
    return 1 + write_uint(0ULL - (unsigned long long)v, out + 1);
}

static const double POW10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

/* The shortest decimal of v without dtoa, for the values metrics hold (integers, a few decimals): the fewest
 * fractional digits k for which n = round(v * 10^k) has at most 15 digits and n / 10^k is v again. Any decimal
 * of at most 15 significant digits names one double alone (DBL_DIG), so those are the digits repr gives; both
 * 10^k and n are exact doubles, so the division is correctly rounded, as reading the text back would be.
 * Returns the length written, or 0 when no such k exists (dtoa decides). */
static Py_ssize_t short_decimal(double v, char *out) {
    if (v == 0.0) return 0; /* the sign of zero: dtoa's */
    double a = fabs(v);
    for (int k = 0; k < 16; k++) {
        double scaled = a * POW10[k];
        if (scaled >= 1e15) return 0;
        double n = nearbyint(scaled);
        if (n / POW10[k] != a) continue;
        char digits[24];
        Py_ssize_t len = write_uint((unsigned long long)n, digits), w = 0;
        if (v < 0) out[w++] = '-';
        if (k == 0) {
            memcpy(out + w, digits, len);
            return w + len;
        }
        if (len <= k) { /* 0.000ddd */
            out[w++] = '0';
            out[w++] = '.';
            memset(out + w, '0', k - len);
            w += k - len;
            memcpy(out + w, digits, len);
            return w + len;
        }
        memcpy(out + w, digits, len - k);
        w += len - k;
        out[w++] = '.';
        memcpy(out + w, digits + len - k, k);
        return w + k;
    }
    return 0;
}

/* The value's text into out (at least 32 bytes): its length, 0 for a staleness marker, UNUSUAL when it needs an
 * exponent (the Python loop's format_value writes those), PY_ERROR on a Python error. */
static Py_ssize_t value_text(double v, char *out) {
    if (isnan(v)) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if (bits == STALE_NAN_BITS) return 0;
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (isinf(v)) {
        memcpy(out, v > 0 ? "+Inf" : "-Inf", 4);
        return 4;
    }
    Py_ssize_t n = short_decimal(v, out);
    if (n > 0) return n;
    char *text = PyOS_double_to_string(v, 'r', 0, 0, NULL); /* what repr(float) calls */
    if (text == NULL) return PY_ERROR;
    n = (Py_ssize_t)strlen(text);
    if (memchr(text, 'e', n) != NULL || n > 30) { PyMem_Free(text); return UNUSUAL; }
    if (n >= 2 && text[n - 2] == '.' && text[n - 1] == '0') n -= 2;
    memcpy(out, text, n);
    PyMem_Free(text);
    return n;
}

/* Protocol buffers' wire format, as much as a Sample needs. */
static const unsigned char *varint(const unsigned char *p, const unsigned char *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        unsigned char byte = *p++;
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) { *out = v; return p; }
    }
    return NULL;
}

/* Past one field of wire type `wire` (its key read); NULL for a group or bytes that end early. */
static const unsigned char *skip(const unsigned char *p, const unsigned char *end, unsigned wire) {
    uint64_t n;
    switch (wire) {
    case 0: return varint(p, end, &n);
    case 1: return end - p >= 8 ? p + 8 : NULL;
    case 2:
        p = varint(p, end, &n);
        return p != NULL && (uint64_t)(end - p) >= n ? p + n : NULL;
    case 5: return end - p >= 4 ? p + 4 : NULL;
    default: return NULL;
    }
}

/* One Sample {double value = 1; int64 timestamp = 2}: 0, or UNUSUAL. A field given twice: the last wins, as in
 * every protobuf parser. */
static int read_sample(const unsigned char *p, const unsigned char *end, long long *ts, double *value) {
    *ts = 0;
    *value = 0.0;
    while (p < end) {
        uint64_t key, n;
        if ((p = varint(p, end, &key)) == NULL) return UNUSUAL;
        if (key == ((1 << 3) | 1)) {
            if (end - p < 8) return UNUSUAL;
            memcpy(value, p, 8); /* little-endian on the wire and here (checked at the top) */
            p += 8;
        } else if (key == ((2 << 3) | 0)) {
            if ((p = varint(p, end, &n)) == NULL) return UNUSUAL;
            *ts = (long long)n;
        } else if ((p = skip(p, end, (unsigned)(key & 7))) == NULL) {
            return UNUSUAL;
        }
    }
    return 0;
}

static PyObject *samples_json(PyObject *self, PyObject *arg) {
    Py_buffer series;
    if (PyObject_GetBuffer(arg, &series, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = series.buf, *end = p + series.len;
    buffer b = {NULL, 0, 0};
    long long first = 0, last = 0;
    Py_ssize_t count = 0, stale = 0;
    if (reserve(&b, 1) < 0) goto fail;
    b.buf[b.len++] = '[';
    while (p < end) {
        uint64_t key, size;
        if ((p = varint(p, end, &key)) == NULL) goto unusual;
        if (key != ((2 << 3) | 2)) { /* not a sample: labels, exemplars, histograms, metadata */
            if ((p = skip(p, end, (unsigned)(key & 7))) == NULL) goto unusual;
            continue;
        }
        if ((p = varint(p, end, &size)) == NULL || (uint64_t)(end - p) < size) goto unusual;
        long long ts;
        double v;
        if (read_sample(p, p + size, &ts, &v) != 0) goto unusual;
        p += size;
        char text[32];
        Py_ssize_t n = value_text(v, text);
        if (n == PY_ERROR) goto fail;
        if (n == UNUSUAL) goto unusual;
        if (n == 0) { stale++; continue; }
        if (reserve(&b, 24 + n + 6) < 0) goto fail;
        char *out = b.buf + b.len;
        if (count > 0) *out++ = ',';
        *out++ = '[';
        out += write_int(ts, out);
        *out++ = ',';
        *out++ = '"';
        memcpy(out, text, n);
        out += n;
        *out++ = '"';
        *out++ = ']';
        b.len = out - b.buf;
        if (count == 0 || ts < first) first = ts;
        if (count == 0 || ts > last) last = ts;
        count++;
    }
    PyBuffer_Release(&series);
    if (reserve(&b, 1) < 0) { PyMem_Free(b.buf); return NULL; }
    b.buf[b.len++] = ']';
    PyObject *text = PyBytes_FromStringAndSize(b.buf, b.len);
    PyMem_Free(b.buf);
    if (text == NULL) return NULL;
    return Py_BuildValue("(NnLLn)", text, count, first, last, stale);
unusual:
    PyBuffer_Release(&series);
    PyMem_Free(b.buf);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&series);
    PyMem_Free(b.buf);
    return NULL;
}

/* One Label {string name = 1; string value = 2} as (name, value): a new reference, NULL with a Python error, or
 * Py_None (a new reference) for what upb would not write. */
static PyObject *read_label(const unsigned char *p, const unsigned char *end) {
    const unsigned char *name = p, *value = p;
    uint64_t name_len = 0, value_len = 0;
    while (p < end) {
        uint64_t key, n;
        if ((p = varint(p, end, &key)) == NULL) Py_RETURN_NONE;
        if (key == ((1 << 3) | 2) || key == ((2 << 3) | 2)) {
            if ((p = varint(p, end, &n)) == NULL || (uint64_t)(end - p) < n) Py_RETURN_NONE;
            if (key >> 3 == 1) { name = p; name_len = n; } else { value = p; value_len = n; }
            p += n;
        } else if ((p = skip(p, end, (unsigned)(key & 7))) == NULL) {
            Py_RETURN_NONE;
        }
    }
    PyObject *n_obj = PyUnicode_DecodeUTF8((const char *)name, (Py_ssize_t)name_len, NULL);
    PyObject *v_obj = n_obj ? PyUnicode_DecodeUTF8((const char *)value, (Py_ssize_t)value_len, NULL) : NULL;
    if (v_obj == NULL) {
        Py_XDECREF(n_obj);
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) { PyErr_Clear(); Py_RETURN_NONE; }
        return NULL;
    }
    return Py_BuildValue("(NN)", n_obj, v_obj);
}

/* label_pairs(series) -> [(name, value), ...] | None: a serialized prometheus.TimeSeries' labels (field 1, remote
 * write 1.0; 2.0's are references into the request's symbols, read in Python), in their order, unchecked (decode's
 * _labels checks them). None for what upb would not write: the caller reads them from the message instead. */
static PyObject *label_pairs(PyObject *self, PyObject *arg) {
    Py_buffer series;
    if (PyObject_GetBuffer(arg, &series, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = series.buf, *end = p + series.len;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (p < end) {
        uint64_t key, size;
        if ((p = varint(p, end, &key)) == NULL) goto unusual;
        if (key != ((1 << 3) | 2)) {
            if ((p = skip(p, end, (unsigned)(key & 7))) == NULL) goto unusual;
            continue;
        }
        if ((p = varint(p, end, &size)) == NULL || (uint64_t)(end - p) < size) goto unusual;
        PyObject *pair = read_label(p, p + size);
        if (pair == NULL) goto fail;
        if (pair == Py_None) { Py_DECREF(pair); goto unusual; }
        int appended = PyList_Append(out, pair);
        Py_DECREF(pair);
        if (appended < 0) goto fail;
        p += size;
    }
    PyBuffer_Release(&series);
    return out;
unusual:
    PyBuffer_Release(&series);
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&series);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"samples_json", samples_json, METH_O, "A serialized TimeSeries' samples as the message's JSON (see the source)."},
    {"label_pairs", label_pairs, METH_O, "A serialized 1.0 TimeSeries' labels as (name, value) pairs, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_samples", "The receiver's compiled hot loop.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__samples(void) { return PyModule_Create(&module); }
