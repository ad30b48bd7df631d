/* The consumer's hot path: one series window's samples to lines of InfluxDB line protocol.
 *
 * format_window(prefix, samples, horizon_ms) -> (lines, nan, inf, first_ts, last_ts) | None
 *
 * Exactly what consumer/transformer.py's pure-Python fast engine does, sample for sample, using the same
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

static PyObject *format_window(PyObject *self, PyObject *args) {
    PyObject *prefix, *samples;
    double horizon;
    if (!PyArg_ParseTuple(args, "UO!d", &prefix, &PyList_Type, &samples, &horizon)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(samples);
    Py_ssize_t plen;
    const char *p = PyUnicode_AsUTF8AndSize(prefix, &plen);
    if (p == NULL) return NULL;
    PyObject *lines = PyList_New(0);
    if (lines == NULL) return NULL;
    long long prev = 0, first = 0, last = 0;
    Py_ssize_t n_nan = 0, n_inf = 0;
    char buf[512];
    char *line = NULL;
    Py_ssize_t cap = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sample = PyList_GET_ITEM(samples, i);
        if (!PyTuple_CheckExact(sample) || PyTuple_GET_SIZE(sample) != 2) goto unusual;
        PyObject *t = PyTuple_GET_ITEM(sample, 0), *v = PyTuple_GET_ITEM(sample, 1);
        if (!PyLong_CheckExact(t) || !PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) goto unusual;
        int overflow = 0;
        long long ts = PyLong_AsLongLongAndOverflow(t, &overflow);
        if (overflow || ts <= 0 || (i > 0 && ts <= prev) || (double)ts > horizon) {
            if (PyErr_Occurred()) PyErr_Clear();
            goto unusual;
        }
        if (i == 0) first = ts;
        prev = last = ts;
        Py_ssize_t vlen;
        const char *vs = PyUnicode_AsUTF8AndSize(v, &vlen);
        if (vs == NULL || vlen == 0 || memchr(vs, '_', vlen) != NULL) goto unusual;
        int tlen = 7;
        memcpy(buf, " value=", 7);
        Py_ssize_t plain = vlen < 64 ? plain_decimal(vs, vlen, buf + tlen) : -1;
        if (plain >= 0) {
            tlen += (int)plain;
        } else {
            char *end = NULL;
            double value = PyOS_string_to_double(vs, &end, NULL);
            if ((value == -1.0 && PyErr_Occurred()) || end != vs + vlen) {
                PyErr_Clear();
                goto unusual;
            }
            if (Py_IS_NAN(value)) { n_nan++; continue; }
            if (Py_IS_INFINITY(value)) { n_inf++; continue; }
            if (value == 0.0 && signbit(value)) goto unusual; /* pandas reads "-0" as the integer 0 */
            char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (text == NULL) goto fail;
            size_t textlen = strlen(text);
            if (textlen > 400) { PyMem_Free(text); goto unusual; }
            memcpy(buf + tlen, text, textlen);
            tlen += (int)textlen;
            PyMem_Free(text);
        }
        buf[tlen++] = ' ';
        tlen += (int)write_int(ts, buf + tlen);
        Py_ssize_t need = plen + tlen;
        if (need > cap) {
            char *grown = PyMem_Realloc(line, need);
            if (grown == NULL) { PyErr_NoMemory(); goto fail; }
            line = grown;
            cap = need;
        }
        memcpy(line, p, plen);
        memcpy(line + plen, buf, tlen);
        PyObject *s = PyUnicode_DecodeUTF8(line, need, "strict");
        if (s == NULL) goto fail;
        int rc = PyList_Append(lines, s);
        Py_DECREF(s);
        if (rc < 0) goto fail;
    }
    PyMem_Free(line);
    return Py_BuildValue("(NnnLL)", lines, n_nan, n_inf, first, last);
unusual:
    PyMem_Free(line);
    Py_DECREF(lines);
    Py_RETURN_NONE;
fail:
    PyMem_Free(line);
    Py_DECREF(lines);
    return NULL;
}

static PyMethodDef methods[] = {
    {"format_window", format_window, METH_VARARGS, "One window's samples as line-protocol lines (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastline", "The consumer's compiled hot path.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastline(void) { return PyModule_Create(&module); }
