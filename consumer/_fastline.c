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
#include <string.h>

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
        char *end = NULL;
        double value = PyOS_string_to_double(vs, &end, NULL);
        if ((value == -1.0 && PyErr_Occurred()) || end != vs + vlen) {
            PyErr_Clear();
            goto unusual;
        }
        if (Py_IS_NAN(value)) { n_nan++; continue; }
        if (Py_IS_INFINITY(value)) { n_inf++; continue; }
        char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) goto fail;
        int tlen = snprintf(buf, sizeof buf, " value=%s %lld", text, ts);
        PyMem_Free(text);
        if (tlen < 0 || tlen >= (int)sizeof buf) goto unusual;
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
