/*
 * bubu._transport._structwire: a decoded JSON object -> the wire bytes of a google.protobuf.Struct.
 *
 * The compiled twin of codec._write_struct (pure Python, ~0.3 us per JSON value): every JSON
 * message a streaming engram sends carries its payload as a Struct for the hub, and writing it
 * was the largest single cost of the SDK's send path. Same bytes as the Python writer, byte for
 * byte (tests/unit/transport/test_structwire.py checks it on generated documents): map entries in
 * the dict's order, the key field always written, numbers as doubles, null as null_value 0.
 *
 * Only exact JSON types are accepted (dict with str keys, list, str, int, float, bool, None). For
 * anything else, an int that does not fit a double, a lone surrogate or nesting deeper than
 * MAX_DEPTH it raises, and codec.struct_bytes runs the Python writer, which gives the canonical
 * result or error. No Python code runs between the two passes, so the document cannot change:
 * nothing in between allocates a GC-tracked object (the output is a bytes object), so no
 * collection and no finalizer can run; the second pass writes exactly what the first measured.
 *
 * Two passes: the first computes the content size of every object and list (in pre-order) so that
 * each length prefix is a minimal varint, as upb and Go write them; the second writes into a bytes
 * object of exactly the right size.
 *
 * go_compact, below, is the envelope's other per-message JSON step in one pass: compacting a
 * payload known valid and applying Go's string escapes (see codec.envelope_request_bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 512

typedef struct {
    Py_ssize_t *sizes;
    Py_ssize_t len;
    Py_ssize_t cap;
    Py_ssize_t next; /* read position in the second pass */
    Py_ssize_t stack[64];
} Sizes;

static int sizes_push(Sizes *s, Py_ssize_t value, Py_ssize_t *slot) {
    if (s->len == s->cap) {
        Py_ssize_t cap = s->cap * 2;
        Py_ssize_t *grown;
        if (s->sizes == s->stack) {
            grown = PyMem_Malloc(sizeof(Py_ssize_t) * cap);
            if (grown != NULL) memcpy(grown, s->stack, sizeof(Py_ssize_t) * s->len);
        } else {
            grown = PyMem_Realloc(s->sizes, sizeof(Py_ssize_t) * cap);
        }
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->sizes = grown;
        s->cap = cap;
    }
    *slot = s->len;
    s->sizes[s->len++] = value;
    return 0;
}

static inline Py_ssize_t varint_len(Py_ssize_t v) {
    size_t u = (size_t)v;
    Py_ssize_t n = 1;
    while (u >= 0x80) {
        u >>= 7;
        n++;
    }
    return n;
}

static inline char *put_varint(char *p, Py_ssize_t v) {
    size_t u = (size_t)v;
    while (u >= 0x80) {
        *p++ = (char)((u & 0x7F) | 0x80);
        u >>= 7;
    }
    *p++ = (char)u;
    return p;
}

static Py_ssize_t size_struct(PyObject *dict, Sizes *s, int depth);
static Py_ssize_t size_list(PyObject *list, Sizes *s, int depth);

/* Size of the Value message holding `item` (without its own tag and length). */
static Py_ssize_t size_value(PyObject *item, Sizes *s, int depth) {
    if (PyUnicode_CheckExact(item)) {
        Py_ssize_t n;
        if (PyUnicode_AsUTF8AndSize(item, &n) == NULL) return -1;
        return 1 + varint_len(n) + n;
    }
    if (PyFloat_CheckExact(item)) return 9;
    if (PyLong_CheckExact(item)) {
        double d = PyLong_AsDouble(item);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        return 9;
    }
    if (PyBool_Check(item) || item == Py_None) return 2;
    if (PyDict_CheckExact(item)) {
        Py_ssize_t n = size_struct(item, s, depth + 1);
        if (n < 0) return -1;
        return 1 + varint_len(n) + n;
    }
    if (PyList_CheckExact(item)) {
        Py_ssize_t n = size_list(item, s, depth + 1);
        if (n < 0) return -1;
        return 1 + varint_len(n) + n;
    }
    PyErr_Format(PyExc_TypeError, "cannot store %s in a google.protobuf.Struct",
                 Py_TYPE(item)->tp_name);
    return -1;
}

/* Content size of a Struct; records it at the object's pre-order slot. */
static Py_ssize_t size_struct(PyObject *dict, Sizes *s, int depth) {
    Py_ssize_t slot, pos = 0, total = 0;
    PyObject *key, *item;
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_RecursionError, "JSON document nested too deeply");
        return -1;
    }
    if (sizes_push(s, 0, &slot) < 0) return -1;
    while (PyDict_Next(dict, &pos, &key, &item)) {
        Py_ssize_t klen, vlen, entry;
        if (!PyUnicode_CheckExact(key)) {
            PyErr_Format(PyExc_TypeError, "object keys must be strings, got %s",
                         Py_TYPE(key)->tp_name);
            return -1;
        }
        if (PyUnicode_AsUTF8AndSize(key, &klen) == NULL) return -1;
        vlen = size_value(item, s, depth);
        if (vlen < 0) return -1;
        entry = 1 + varint_len(klen) + klen + 1 + varint_len(vlen) + vlen;
        total += 1 + varint_len(entry) + entry;
    }
    s->sizes[slot] = total;
    return total;
}

static Py_ssize_t size_list(PyObject *list, Sizes *s, int depth) {
    Py_ssize_t slot, i, total = 0;
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_RecursionError, "JSON document nested too deeply");
        return -1;
    }
    if (sizes_push(s, 0, &slot) < 0) return -1;
    for (i = 0; i < PyList_GET_SIZE(list); i++) {
        Py_ssize_t vlen = size_value(PyList_GET_ITEM(list, i), s, depth);
        if (vlen < 0) return -1;
        total += 1 + varint_len(vlen) + vlen;
    }
    s->sizes[slot] = total;
    return total;
}

static char *write_struct(char *p, PyObject *dict, Sizes *s);
static char *write_list(char *p, PyObject *list, Sizes *s);

/* Writes the Value for `item`; `vlen` is its size from the first pass (for containers, the
 * nested content size is read from `s`). The checks were done in the first pass. */
static char *write_value(char *p, PyObject *item, Sizes *s) {
    if (PyUnicode_CheckExact(item)) {
        Py_ssize_t n;
        const char *raw = PyUnicode_AsUTF8AndSize(item, &n);
        *p++ = 0x1A; /* string_value (3) */
        p = put_varint(p, n);
        memcpy(p, raw, (size_t)n);
        return p + n;
    }
    if (PyFloat_CheckExact(item) || PyLong_CheckExact(item)) {
        double d = PyFloat_CheckExact(item) ? PyFloat_AS_DOUBLE(item) : PyLong_AsDouble(item);
        *p++ = 0x11; /* number_value (2), fixed64 */
        if (PyFloat_Pack8(d, p, 1) < 0) return NULL;
        return p + 8;
    }
    if (PyBool_Check(item)) {
        *p++ = 0x20; /* bool_value (4) */
        *p++ = item == Py_True ? 1 : 0;
        return p;
    }
    if (item == Py_None) {
        *p++ = 0x08; /* null_value (1) = NULL_VALUE */
        *p++ = 0;
        return p;
    }
    if (PyDict_CheckExact(item)) {
        *p++ = 0x2A; /* struct_value (5) */
        p = put_varint(p, s->sizes[s->next]);
        return write_struct(p, item, s);
    }
    *p++ = 0x32; /* list_value (6) */
    p = put_varint(p, s->sizes[s->next]);
    return write_list(p, item, s);
}

/* Size of the Value for `item`, recomputed cheaply from the first pass's container sizes. */
static Py_ssize_t value_len(PyObject *item, Sizes *s) {
    if (PyUnicode_CheckExact(item)) {
        Py_ssize_t n;
        PyUnicode_AsUTF8AndSize(item, &n); /* cached by the first pass */
        return 1 + varint_len(n) + n;
    }
    if (PyFloat_CheckExact(item) || PyLong_CheckExact(item)) return 9;
    if (PyBool_Check(item) || item == Py_None) return 2;
    {
        Py_ssize_t n = s->sizes[s->next];
        return 1 + varint_len(n) + n;
    }
}

static char *write_struct(char *p, PyObject *dict, Sizes *s) {
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    s->next++; /* this object's own slot */
    while (PyDict_Next(dict, &pos, &key, &item)) {
        Py_ssize_t klen, vlen, entry;
        const char *raw = PyUnicode_AsUTF8AndSize(key, &klen);
        vlen = value_len(item, s);
        entry = 1 + varint_len(klen) + klen + 1 + varint_len(vlen) + vlen;
        *p++ = 0x0A; /* Struct.fields (1): a map entry */
        p = put_varint(p, entry);
        *p++ = 0x0A; /* entry key (1) */
        p = put_varint(p, klen);
        memcpy(p, raw, (size_t)klen);
        p += klen;
        *p++ = 0x12; /* entry value (2) */
        p = put_varint(p, vlen);
        p = write_value(p, item, s);
        if (p == NULL) return NULL;
    }
    return p;
}

static char *write_list(char *p, PyObject *list, Sizes *s) {
    Py_ssize_t i;
    s->next++;
    for (i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        *p++ = 0x0A; /* ListValue.values (1) */
        p = put_varint(p, value_len(item, s));
        p = write_value(p, item, s);
        if (p == NULL) return NULL;
    }
    return p;
}

static PyObject *struct_bytes(PyObject *module, PyObject *data) {
    Sizes s;
    Py_ssize_t total;
    PyObject *out = NULL;
    char *end;
    (void)module;
    if (!PyDict_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError, "expected a dict, got %s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    s.sizes = s.stack;
    s.len = 0;
    s.cap = (Py_ssize_t)(sizeof(s.stack) / sizeof(s.stack[0]));
    s.next = 0;
    total = size_struct(data, &s, 0);
    if (total < 0) goto done;
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    end = write_struct(PyBytes_AS_STRING(out), data, &s);
    if (end == NULL) {
        Py_CLEAR(out);
    } else if (end != PyBytes_AS_STRING(out) + total) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_SystemError, "Struct size mismatch");
    }
done:
    if (s.sizes != s.stack) PyMem_Free(s.sizes);
    return out;
}

/*
 * go_compact(doc: bytes) -> bytes: valid JSON -> Go's json.Compact of it with encoding/json's
 * string escapes (<, >, & as \u003c, \u003e, \u0026; U+2028/U+2029 as \u2028/\u2029), in one
 * pass. The input must already be known valid (codec decodes it with msgspec first, which is
 * needed for the Struct anyway): this only tracks whether a byte is inside a string, so it equals
 * codec.go_escape_json(msgspec.json.format(doc, indent=-1)) on valid JSON and nothing is
 * promised for anything else. Returns ``doc`` itself when nothing changes (the usual case).
 */
static PyObject *go_compact(PyObject *module, PyObject *doc) {
    const unsigned char *s, *end, *p;
    Py_ssize_t n, size = 0;
    int in_string = 0, changed = 0;
    PyObject *out;
    unsigned char *w;
    (void)module;
    if (!PyBytes_CheckExact(doc)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, got %s", Py_TYPE(doc)->tp_name);
        return NULL;
    }
    s = (const unsigned char *)PyBytes_AS_STRING(doc);
    n = PyBytes_GET_SIZE(doc);
    end = s + n;
    /* first pass: the output size, and whether anything changes */
    for (p = s; p < end; p++) {
        unsigned char c = *p;
        if (!in_string) {
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                changed = 1;
                continue;
            }
            if (c == '"') in_string = 1;
            size++;
        } else if (c == '\\') {
            size += (p + 1 < end) ? 2 : 1;
            p++;
        } else if (c == '"') {
            in_string = 0;
            size++;
        } else if (c == '<' || c == '>' || c == '&') {
            size += 6;
            changed = 1;
        } else if (c == 0xE2 && p + 2 < end && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
            size += 6;
            p += 2;
            changed = 1;
        } else {
            size++;
        }
    }
    if (!changed) {
        Py_INCREF(doc);
        return doc;
    }
    out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    w = (unsigned char *)PyBytes_AS_STRING(out);
    in_string = 0;
    for (p = s; p < end; p++) {
        unsigned char c = *p;
        if (!in_string) {
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
            if (c == '"') in_string = 1;
            *w++ = c;
        } else if (c == '\\') {
            *w++ = c;
            if (p + 1 < end) *w++ = *++p;
        } else if (c == '"') {
            in_string = 0;
            *w++ = c;
        } else if (c == '<' || c == '>' || c == '&') {
            memcpy(w, c == '<' ? "\\u003c" : c == '>' ? "\\u003e" : "\\u0026", 6);
            w += 6;
        } else if (c == 0xE2 && p + 2 < end && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
            memcpy(w, p[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
            w += 6;
            p += 2;
        } else {
            *w++ = c;
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"struct_bytes", struct_bytes, METH_O,
     "struct_bytes(data: dict) -> bytes\n--\n\n"
     "The serialized google.protobuf.Struct of a decoded JSON object."},
    {"go_compact", go_compact, METH_O,
     "go_compact(doc: bytes) -> bytes\n--\n\n"
     "Valid JSON, compacted and with Go's string escapes (codec.go_escape_json)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_structwire",
    "Compiled google.protobuf.Struct writer and JSON compactor (see codec).", 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__structwire(void) { return PyModule_Create(&module); }
