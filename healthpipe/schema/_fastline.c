/* The consumer's hot path: one series window's samples to lines of InfluxDB line protocol.
 *
 * format_window(prefix, samples, horizon_ms) -> (lines, nan, inf, first_ts, last_ts) | None
 * format_text(prefix, samples_json, horizon_ms) -> the same, from the samples' JSON text (common.messages.RawSamples)
 * format_body(prefix, samples_json, horizon_ms) -> (body, lines, nan, inf, first_ts, last_ts) | None: the lines as
 *     one UTF-8 bytes object, each line ending in "\n" -- what the consumer posts, with no str per line
 * scan_samples(samples_json) -> how many samples, or -1 when the text is not the usual [[int, "str"], ...]
 * sample_arrays(samples_json) -> (int64 timestamps, float64 values) as bytes | None: the archive's columns
 *
 * Exactly what healthpipe/sinks/influx/transformer.py's pure-Python fast engine does, sample for sample, using the same
 * CPython routines Python itself uses: PyOS_string_to_double (what float() calls) and PyOS_double_to_string
 * with 'r' (what repr(float) calls), so the lines are byte-identical to the reference engine's
 * (tests/unit/test_transform_engines.py). Returns None for anything unusual (a timestamp that is not a
 * positive int64, not strictly increasing or beyond the horizon; a value that is not an ASCII str, holds an
 * underscore or does not parse whole): the caller then takes the reference engine for the batch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* The text repr(float(s)) gives, without the round trip, for the plain decimals Prometheus writes (Go's
 * FormatFloat(v, 'f', -1, 64)): when s has at most 15 significant digits, no leading zero, no trailing zero after
 * the point and a magnitude in [1e-4, 1e16) -- where repr uses positional notation -- the shortest string that
 * round-trips is s itself (15 digits identify a double uniquely), and an integer gets ".0". Returns the length
 * written to out, or -1 when s is not such a decimal (then the caller takes the dtoa path). */
static Py_ssize_t plain_decimal(const char *s, Py_ssize_t n, char *out) {
    Py_ssize_t i = 0, int_digits = 0, frac_digits = 0, lead_frac_zeros = 0;
    if (n > 0 && s[0] == '-') i = 1;
    Py_ssize_t int_start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') { i++; int_digits++; }
    if (int_digits == 0 || (int_digits > 1 && s[int_start] == '0')) return -1;
    int zero_int = int_digits == 1 && s[int_start] == '0';
    if (i < n) {
        if (s[i] != '.') return -1;
        i++;
        Py_ssize_t frac_start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') { i++; frac_digits++; }
        if (i != n || frac_digits == 0 || s[n - 1] == '0') return -1;
        if (zero_int) {
            while (lead_frac_zeros < frac_digits && s[frac_start + lead_frac_zeros] == '0') lead_frac_zeros++;
            if (lead_frac_zeros >= 4) return -1; /* below 1e-4 repr switches to exponent notation */
        }
    }
    Py_ssize_t significant = zero_int ? frac_digits - lead_frac_zeros : int_digits + frac_digits;
    if (significant > 15 || int_digits > 15) return -1;
    memcpy(out, s, n);
    if (frac_digits == 0) {
        if (zero_int && s[0] == '-') return -1; /* "-0": leave the sign of zero to dtoa */
        memcpy(out + n, ".0", 2);
        return n + 2;
    }
    return n;
}

static Py_ssize_t write_int(long long v, char *out) {
    char tmp[24];
    Py_ssize_t k = 0;
    do { tmp[k++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
    for (Py_ssize_t j = 0; j < k; j++) out[j] = tmp[k - 1 - j];
    return k;
}

/* One window's output as it grows: the lines, the drop counts, the timestamps seen. */
typedef struct {
    PyObject *lines; /* NULL when the window is built as one body instead */
    char *body;
    Py_ssize_t blen, bcap;
    const char *prefix;
    Py_ssize_t plen;
    int ascii_prefix;
    char *line;
    Py_ssize_t cap;
    long long prev, first, last;
    Py_ssize_t n_nan, n_inf, count, n_lines;
    double horizon;
} window_state;

/* One sample into the window: 1 done (a line appended, or the sample counted as NaN/Inf), 0 unusual (the caller
 * takes the reference engine), -1 a Python error. */
static int add_sample(window_state *st, long long ts, const char *vs, Py_ssize_t vlen) {
    if (ts <= 0 || (st->count > 0 && ts <= st->prev) || (double)ts > st->horizon) return 0;
    if (st->count == 0) st->first = ts;
    st->prev = st->last = ts;
    st->count++;
    if (vlen == 0 || memchr(vs, '_', vlen) != NULL) return 0;
    char buf[512];
    int tlen = 7;
    memcpy(buf, " value=", 7);
    Py_ssize_t plain = vlen < 64 ? plain_decimal(vs, vlen, buf + tlen) : -1;
    if (plain >= 0) {
        tlen += (int)plain;
    } else {
        char small[72];
        char *text_in = vlen < 72 ? small : PyMem_Malloc(vlen + 1);
        if (text_in == NULL) { PyErr_NoMemory(); return -1; }
        memcpy(text_in, vs, vlen); /* PyOS_string_to_double reads up to a NUL: the value ends here */
        text_in[vlen] = '\0';
        char *end = NULL;
        double value = PyOS_string_to_double(text_in, &end, NULL);
        int whole = end == text_in + vlen;
        if (text_in != small) PyMem_Free(text_in);
        if ((value == -1.0 && PyErr_Occurred()) || !whole) {
            PyErr_Clear();
            return 0;
        }
        if (Py_IS_NAN(value)) { st->n_nan++; return 1; }
        if (Py_IS_INFINITY(value)) { st->n_inf++; return 1; }
        if (value == 0.0 && signbit(value)) return 0; /* pandas reads "-0" as the integer 0 */
        char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) return -1;
        size_t textlen = strlen(text);
        if (textlen > 400) { PyMem_Free(text); return 0; }
        memcpy(buf + tlen, text, textlen);
        tlen += (int)textlen;
        PyMem_Free(text);
    }
    buf[tlen++] = ' ';
    tlen += (int)write_int(ts, buf + tlen);
    Py_ssize_t need = st->plen + tlen;
    if (st->lines == NULL) { /* body mode: append the line's bytes, no Python object */
        if (st->blen + need + 1 > st->bcap) {
            Py_ssize_t cap = st->bcap ? st->bcap * 2 : 4096;
            while (cap < st->blen + need + 1) cap *= 2;
            char *grown = PyMem_Realloc(st->body, cap);
            if (grown == NULL) { PyErr_NoMemory(); return -1; }
            st->body = grown;
            st->bcap = cap;
        }
        memcpy(st->body + st->blen, st->prefix, st->plen);
        memcpy(st->body + st->blen + st->plen, buf, tlen);
        st->blen += need;
        st->body[st->blen++] = '\n';
        st->n_lines++;
        return 1;
    }
    PyObject *s;
    if (st->ascii_prefix) { /* ASCII throughout: copy into the str, no UTF-8 decoding */
        s = PyUnicode_New(need, 127);
        if (s == NULL) return -1;
        memcpy(PyUnicode_1BYTE_DATA(s), st->prefix, st->plen);
        memcpy(PyUnicode_1BYTE_DATA(s) + st->plen, buf, tlen);
    } else {
        if (need > st->cap) {
            char *grown = PyMem_Realloc(st->line, need);
            if (grown == NULL) { PyErr_NoMemory(); return -1; }
            st->line = grown;
            st->cap = need;
        }
        memcpy(st->line, st->prefix, st->plen);
        memcpy(st->line + st->plen, buf, tlen);
        s = PyUnicode_DecodeUTF8(st->line, need, "strict");
        if (s == NULL) return -1;
    }
    int rc = PyList_Append(st->lines, s);
    Py_DECREF(s);
    return rc < 0 ? -1 : 1;
}

static int start_window(window_state *st, PyObject *prefix, double horizon, int as_body) {
    memset(st, 0, sizeof(*st));
    st->prefix = PyUnicode_AsUTF8AndSize(prefix, &st->plen);
    if (st->prefix == NULL) return -1;
    st->ascii_prefix = PyUnicode_IS_ASCII(prefix);
    st->horizon = horizon;
    if (as_body) return 0;
    st->lines = PyList_New(0);
    return st->lines == NULL ? -1 : 0;
}

/* rc: 1 done, 0 unusual, -1 error. */
static PyObject *finish_window(window_state *st, int rc) {
    PyMem_Free(st->line);
    if (st->lines == NULL) {
        PyObject *out = NULL;
        if (rc == 1) {
            PyObject *body = PyBytes_FromStringAndSize(st->body ? st->body : "", st->blen);
            if (body != NULL)
                out = Py_BuildValue("(NnnnLL)", body, st->n_lines, st->n_nan, st->n_inf, st->first, st->last);
        }
        PyMem_Free(st->body);
        if (rc == 0) Py_RETURN_NONE;
        return out;
    }
    if (rc == 1) return Py_BuildValue("(NnnLL)", st->lines, st->n_nan, st->n_inf, st->first, st->last);
    Py_DECREF(st->lines);
    if (rc == 0) Py_RETURN_NONE;
    return NULL;
}

static PyObject *format_window(PyObject *self, PyObject *args) {
    PyObject *prefix, *samples;
    double horizon;
    if (!PyArg_ParseTuple(args, "UO!d", &prefix, &PyList_Type, &samples, &horizon)) return NULL;
    window_state st;
    if (start_window(&st, prefix, horizon, 0) < 0) return NULL;
    int rc = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(samples) && rc == 1; i++) {
        PyObject *sample = PyList_GET_ITEM(samples, i);
        if (!PyTuple_CheckExact(sample) || PyTuple_GET_SIZE(sample) != 2) { rc = 0; break; }
        PyObject *t = PyTuple_GET_ITEM(sample, 0), *v = PyTuple_GET_ITEM(sample, 1);
        if (!PyLong_CheckExact(t) || !PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) { rc = 0; break; }
        int overflow = 0;
        long long ts = PyLong_AsLongLongAndOverflow(t, &overflow);
        if (overflow || (ts == -1 && PyErr_Occurred())) { PyErr_Clear(); rc = 0; break; }
        Py_ssize_t vlen;
        const char *vs = PyUnicode_AsUTF8AndSize(v, &vlen);
        if (vs == NULL) { rc = -1; break; }
        rc = add_sample(&st, ts, vs, vlen);
    }
    return finish_window(&st, rc);
}

/* --- the samples as JSON text: [[ts, "value"], ...] --------------------------------------------------- */

typedef struct { const char *p, *end; int started; } cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

/* The next [integer, "string"] pair: 1 with ts and the string's bytes, 0 at the end of the array, -1 for anything
 * else (an integer of more than 18 digits, a fraction or exponent, an escape, a control or non-ASCII byte in the
 * string, other JSON): the caller then decodes the message the general way. */
static int next_sample(cursor *c, long long *ts, const char **v, Py_ssize_t *vlen) {
    skip_ws(c);
    if (!c->started) {
        if (c->p >= c->end || *c->p != '[') return -1;
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == ']') { c->p++; skip_ws(c); return c->p == c->end ? 0 : -1; }
        c->started = 1;
    } else {
        if (c->p >= c->end) return -1;
        if (*c->p == ']') { c->p++; skip_ws(c); return c->p == c->end ? 0 : -1; }
        if (*c->p != ',') return -1;
        c->p++;
        skip_ws(c);
    }
    if (c->p >= c->end || *c->p != '[') return -1;
    c->p++;
    skip_ws(c);
    int negative = c->p < c->end && *c->p == '-';
    if (negative) c->p++;
    const char *digits = c->p;
    long long x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') x = x * 10 + (*c->p++ - '0');
    Py_ssize_t nd = c->p - digits;
    if (nd == 0 || nd > 18 || (nd > 1 && *digits == '0')) return -1;
    *ts = negative ? -x : x;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ',') return -1;
    c->p++;
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return -1;
    const char *s = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x80) return -1;
        c->p++;
    }
    if (c->p >= c->end) return -1;
    *v = s;
    *vlen = c->p - s;
    c->p++;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ']') return -1;
    c->p++;
    return 1;
}

static PyObject *scan_samples(PyObject *self, PyObject *args) {
    Py_buffer text;
    if (!PyArg_ParseTuple(args, "y*", &text)) return NULL;
    cursor c = {(const char *)text.buf, (const char *)text.buf + text.len, 0};
    long long ts;
    const char *v;
    Py_ssize_t vlen, n = 0;
    int rc;
    while ((rc = next_sample(&c, &ts, &v, &vlen)) == 1) n++;
    PyBuffer_Release(&text);
    return PyLong_FromSsize_t(rc == 0 ? n : -1);
}

static PyObject *text_window(PyObject *args, int as_body) {
    PyObject *prefix;
    Py_buffer text;
    double horizon;
    if (!PyArg_ParseTuple(args, "Uy*d", &prefix, &text, &horizon)) return NULL;
    window_state st;
    if (start_window(&st, prefix, horizon, as_body) < 0) { PyBuffer_Release(&text); return NULL; }
    cursor c = {(const char *)text.buf, (const char *)text.buf + text.len, 0};
    long long ts;
    const char *v;
    Py_ssize_t vlen;
    int rc = 1, more;
    while (rc == 1 && (more = next_sample(&c, &ts, &v, &vlen)) != 0) rc = more < 0 ? 0 : add_sample(&st, ts, v, vlen);
    PyBuffer_Release(&text);
    return finish_window(&st, rc);
}

static PyObject *format_text(PyObject *self, PyObject *args) { return text_window(args, 0); }

static PyObject *format_body(PyObject *self, PyObject *args) { return text_window(args, 1); }

/* The archive's arrays: (timestamps as int64 bytes, values as float64 bytes) | None. A value is read as float()
 * reads it (NaN and +-Inf kept, as the cold tier keeps them); None when a timestamp is not positive or a value is
 * not plain float() text (an underscore, spaces, not a number): the caller's general path decides those. */
static PyObject *sample_arrays(PyObject *self, PyObject *args) {
    Py_buffer text;
    if (!PyArg_ParseTuple(args, "y*", &text)) return NULL;
    const char *start = (const char *)text.buf, *stop = start + text.len;
    cursor c = {start, stop, 0};
    long long ts;
    const char *v;
    Py_ssize_t vlen, n = 0;
    int rc;
    while ((rc = next_sample(&c, &ts, &v, &vlen)) == 1) n++;
    PyObject *ts_bytes = NULL, *value_bytes = NULL;
    if (rc != 0) goto unusual;
    ts_bytes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(long long));
    value_bytes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (ts_bytes == NULL || value_bytes == NULL) goto fail;
    long long *ts_out = (long long *)PyBytes_AS_STRING(ts_bytes);
    double *value_out = (double *)PyBytes_AS_STRING(value_bytes);
    cursor again = {start, stop, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        next_sample(&again, &ts, &v, &vlen);
        if (ts <= 0 || vlen == 0 || vlen >= 72 || memchr(v, '_', vlen) != NULL) goto unusual;
        char value_text[72];
        memcpy(value_text, v, vlen);
        value_text[vlen] = '\0';
        char *end = NULL;
        double value = PyOS_string_to_double(value_text, &end, NULL);
        if ((value == -1.0 && PyErr_Occurred()) || end != value_text + vlen) { PyErr_Clear(); goto unusual; }
        ts_out[i] = ts;
        value_out[i] = value;
    }
    PyBuffer_Release(&text);
    return Py_BuildValue("(NN)", ts_bytes, value_bytes);
unusual:
    PyBuffer_Release(&text);
    Py_XDECREF(ts_bytes);
    Py_XDECREF(value_bytes);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&text);
    Py_XDECREF(ts_bytes);
    Py_XDECREF(value_bytes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"format_window", format_window, METH_VARARGS, "One window's samples as line-protocol lines (see the source)."},
    {"format_text", format_text, METH_VARARGS, "format_window for samples still as their JSON text."},
    {"format_body", format_body, METH_VARARGS, "format_text's lines as one bytes body, each ending in a newline."},
    {"sample_arrays", sample_arrays, METH_VARARGS, "The samples' JSON text as int64 and float64 bytes, or None."},
    {"scan_samples", scan_samples, METH_VARARGS, "How many [int, \"str\"] pairs the JSON text holds, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastline", "The consumer's compiled hot path.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastline(void) { return PyModule_Create(&module); }
