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
#include <math.h>
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
 * json_payload(doc: bytes) -> (bytes, bytes) | None: JSON object text -> the wire bytes of the
 * google.protobuf.Struct that codec.struct_bytes writes for msgspec's decoding of it, without
 * building the Python objects (the decode was the largest cost of sending a JSON message), and
 * go_compact(doc) (``doc`` itself when the first pass saw nothing to change, the usual case).
 *
 * Strict RFC 8259 JSON with valid UTF-8 only. Anything else or unusual returns None and the
 * caller takes the reference road (msgspec decode + struct_bytes), which gives the canonical
 * result or error: a top level that is not an object, a duplicate key or a key with an escape
 * (msgspec keeps the last value at the first position), a lone surrogate, a number token over 64
 * characters or outside a double, nesting deeper than JSON_MAX_DEPTH, objects over MAX_KEYS keys.
 * Numbers are correctly rounded doubles (PyOS_string_to_double), as msgspec decodes them; an
 * integer token "-0" is an int 0 in msgspec, so +0.0 here.
 *
 * Two passes like struct_bytes: the first validates and records, in pre-order, every container's
 * content size, every string's decoded length and every number; the second writes.
 */
#define MAX_KEYS 64   /* keys compared per object (and kept on the C stack) */
#define JSON_MAX_DEPTH 64

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    Sizes *s;
    int changed; /* the first pass saw whitespace or a byte Go escapes: not Go-compact */
} Json;

static inline void j_ws(Json *j) {
    const unsigned char *start = j->p;
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
    if (j->p != start) j->changed = 1;
}

static inline int hex4(const unsigned char *p, unsigned int *out) {
    unsigned int v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned int)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned int)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned int)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Length in bytes of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 if invalid. */
static inline int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] > 0x9F) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && p[1] > 0x8F) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* At the opening quote: validates the string, returns its decoded UTF-8 length (or -1) and
 * moves past the closing quote; *escaped tells whether it held an escape. With `w`, also writes
 * the decoded bytes there. */
/* Bytes that stand for themselves inside a JSON string and Go does not escape: printable
 * ASCII but '"', '\\', '<', '>' and '&'. */
static unsigned char STR_PLAIN[256];

static Py_ssize_t j_string(Json *j, char *w, int *escaped) {
    const unsigned char *p = j->p + 1, *end = j->end;
    Py_ssize_t n = 0;
    *escaped = 0;
    while (p < end) {
        unsigned char c;
        const unsigned char *run = p;
        while (p < end && STR_PLAIN[*p]) p++;
        if (p != run) {
            if (w) memcpy(w + n, run, (size_t)(p - run));
            n += p - run;
            if (p >= end) break;
        }
        c = *p;
        if (c == '"') {
            j->p = p + 1;
            return n;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            unsigned int cp;
            *escaped = 1;
            if (end - p < 2) return -1;
            c = p[1];
            p += 2;
            switch (c) {
            case '"': case '\\': case '/': cp = c; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (end - p < 4 || hex4(p, &cp) < 0) return -1;
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned int lo;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return -1; /* a lone surrogate: msgspec refuses it */
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return -1;
                }
                break;
            default:
                return -1;
            }
            if (cp < 0x80) {
                if (w) w[n] = (char)cp;
                n += 1;
            } else if (cp < 0x800) {
                if (w) {
                    w[n] = (char)(0xC0 | (cp >> 6));
                    w[n + 1] = (char)(0x80 | (cp & 0x3F));
                }
                n += 2;
            } else if (cp < 0x10000) {
                if (w) {
                    w[n] = (char)(0xE0 | (cp >> 12));
                    w[n + 1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    w[n + 2] = (char)(0x80 | (cp & 0x3F));
                }
                n += 3;
            } else {
                if (w) {
                    w[n] = (char)(0xF0 | (cp >> 18));
                    w[n + 1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    w[n + 2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    w[n + 3] = (char)(0x80 | (cp & 0x3F));
                }
                n += 4;
            }
            continue;
        }
        if (c < 0x80) { /* '<', '>' or '&': Go escapes them */
            j->changed = 1;
            if (w) w[n] = (char)c;
            n++;
            p++;
        } else {
            int k = utf8_len(p, end);
            if (k == 0) return -1;
            if (c == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) j->changed = 1;
            if (w) memcpy(w + n, p, (size_t)k);
            n += k;
            p += k;
        }
    }
    return -1; /* unterminated */
}

/* Validates the number token at j->p, moves past it and stores its double in *out. */
static int j_number(Json *j, double *out) {
    const unsigned char *start = j->p, *p = j->p, *end = j->end;
    int integral = 1;
    char buf[72];
    char *stop;
    double d;
    if (p < end && *p == '-') p++;
    if (p >= end) return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return -1;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p - start > 64) return -1;
    memcpy(buf, start, (size_t)(p - start));
    buf[p - start] = '\0';
    d = PyOS_string_to_double(buf, &stop, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (stop != buf + (p - start) || !isfinite(d)) return -1;
    if (integral && d == 0.0) d = 0.0; /* "-0" is the int 0 */
    *out = d;
    j->p = p;
    return 0;
}

static int j_push(Json *j, Py_ssize_t v) {
    Py_ssize_t slot;
    return sizes_push(j->s, v, &slot);
}

static Py_ssize_t j_value(Json *j, int depth);

/* At '{': the Struct's content size (recorded at the object's pre-order slot), or -1. */
static Py_ssize_t j_object(Json *j, int depth) {
    Py_ssize_t slot, total = 0, nkeys = 0;
    const unsigned char *keys[MAX_KEYS];
    Py_ssize_t klens[MAX_KEYS];
    if (depth > JSON_MAX_DEPTH || sizes_push(j->s, 0, &slot) < 0) return -1;
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        Py_ssize_t klen, vlen, entry, i;
        const unsigned char *kstart;
        int escaped;
        if (j->p >= j->end || *j->p != '"') return -1;
        kstart = j->p + 1;
        klen = j_string(j, NULL, &escaped);
        if (klen < 0 || escaped || nkeys == MAX_KEYS) return -1;
        for (i = 0; i < nkeys; i++) {
            if (klens[i] == klen && memcmp(keys[i], kstart, (size_t)klen) == 0) return -1;
        }
        keys[nkeys] = kstart;
        klens[nkeys++] = klen;
        j_ws(j);
        if (j->p >= j->end || *j->p != ':') return -1;
        j->p++;
        j_ws(j);
        vlen = j_value(j, depth);
        if (vlen < 0) return -1;
        entry = 1 + varint_len(klen) + klen + 1 + varint_len(vlen) + vlen;
        total += 1 + varint_len(entry) + entry;
        j_ws(j);
        if (j->p >= j->end) return -1;
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        if (*j->p != '}') return -1;
        j->p++;
        j->s->sizes[slot] = total;
        return total;
    }
}

static Py_ssize_t j_array(Json *j, int depth) {
    Py_ssize_t slot, total = 0;
    if (depth > JSON_MAX_DEPTH || sizes_push(j->s, 0, &slot) < 0) return -1;
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        Py_ssize_t vlen = j_value(j, depth);
        if (vlen < 0) return -1;
        total += 1 + varint_len(vlen) + vlen;
        j_ws(j);
        if (j->p >= j->end) return -1;
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        if (*j->p != ']') return -1;
        j->p++;
        j->s->sizes[slot] = total;
        return total;
    }
}

static int j_literal(Json *j, const char *word, size_t n) {
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return -1;
    j->p += n;
    return 0;
}

/* First pass over one value: validates and records it; returns the size of its Value. */
static Py_ssize_t j_value(Json *j, int depth) {
    Py_ssize_t n;
    if (j->p >= j->end) return -1;
    switch (*j->p) {
    case '{':
        n = j_object(j, depth + 1);
        return n < 0 ? -1 : 1 + varint_len(n) + n;
    case '[':
        n = j_array(j, depth + 1);
        return n < 0 ? -1 : 1 + varint_len(n) + n;
    case '"': {
        /* recorded as -(n + 1) when it holds an escape: the second pass decodes only those */
        int escaped;
        n = j_string(j, NULL, &escaped);
        if (n < 0 || j_push(j, escaped ? -(n + 1) : n) < 0) return -1;
        return 1 + varint_len(n) + n;
    }
    case 't':
        return j_literal(j, "true", 4) < 0 ? -1 : 2;
    case 'f':
        return j_literal(j, "false", 5) < 0 ? -1 : 2;
    case 'n':
        return j_literal(j, "null", 4) < 0 ? -1 : 2;
    default: {
        double d;
        Py_ssize_t bits;
        if (j_number(j, &d) < 0) return -1;
        memcpy(&bits, &d, sizeof(bits));
        return j_push(j, bits) < 0 ? -1 : 9;
    }
    }
}

static char *w_value(Json *j, char *w);

/* The encoded size of the Value at j->p, from what the first pass recorded at this point:
 * a container's or string's body size (a string with escapes is stored as -size-1), or the
 * fixed size of a bool/null (tag + 1 byte) or a number (tag + 8-byte double). */
static Py_ssize_t value_size(const Json *j) {
    switch (*j->p) {
    case '{': case '[': case '"': {
        Py_ssize_t c = j->s->sizes[j->s->next];
        if (c < 0) c = -c - 1;
        return 1 + varint_len(c) + c;
    }
    case 't': case 'f': case 'n': return 2;
    default: return 9;
    }
}

static char *w_object(Json *j, char *w) {
    j->p++; /* the pre-order size was read by the caller */
    j_ws(j);
    if (*j->p == '}') {
        j->p++;
        return w;
    }
    for (;;) {
        const unsigned char *kstart = j->p + 1;
        Py_ssize_t klen, vlen, entry;
        /* no escape (the first pass declined those): the key is the bytes up to the quote */
        klen = (const unsigned char *)memchr(kstart, '"', (size_t)(j->end - kstart)) - kstart;
        j->p = kstart + klen + 1;
        j_ws(j);
        j->p++; /* ':' */
        j_ws(j);
        vlen = value_size(j);
        entry = 1 + varint_len(klen) + klen + 1 + varint_len(vlen) + vlen;
        *w++ = 0x0A; /* Struct.fields (1): a map entry */
        w = put_varint(w, entry);
        *w++ = 0x0A; /* key */
        w = put_varint(w, klen);
        memcpy(w, kstart, (size_t)klen);
        w += klen;
        *w++ = 0x12; /* value */
        w = put_varint(w, vlen);
        w = w_value(j, w);
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        j->p++; /* '}' */
        return w;
    }
}

static char *w_array(Json *j, char *w) {
    j->p++;
    j_ws(j);
    if (*j->p == ']') {
        j->p++;
        return w;
    }
    for (;;) {
        Py_ssize_t vlen = value_size(j);
        *w++ = 0x0A; /* ListValue.values (1) */
        w = put_varint(w, vlen);
        w = w_value(j, w);
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        j->p++; /* ']' */
        return w;
    }
}

static char *w_value(Json *j, char *w) {
    switch (*j->p) {
    case '{':
        *w++ = 0x2A; /* struct_value (5) */
        w = put_varint(w, j->s->sizes[j->s->next++]);
        return w_object(j, w);
    case '[':
        *w++ = 0x32; /* list_value (6) */
        w = put_varint(w, j->s->sizes[j->s->next++]);
        return w_array(j, w);
    case '"': {
        Py_ssize_t n = j->s->sizes[j->s->next++];
        int escaped;
        *w++ = 0x1A; /* string_value (3) */
        if (n >= 0) { /* no escape: the bytes between the quotes */
            w = put_varint(w, n);
            memcpy(w, j->p + 1, (size_t)n);
            j->p += n + 2;
            return w + n;
        }
        n = -n - 1;
        w = put_varint(w, n);
        j_string(j, w, &escaped);
        return w + n;
    }
    case 't':
        j->p += 4;
        *w++ = 0x20; /* bool_value (4) */
        *w++ = 1;
        return w;
    case 'f':
        j->p += 5;
        *w++ = 0x20;
        *w++ = 0;
        return w;
    case 'n':
        j->p += 4;
        *w++ = 0x08; /* null_value (1) */
        *w++ = 0;
        return w;
    default: {
        double d;
        Py_ssize_t bits = j->s->sizes[j->s->next++];
        memcpy(&d, &bits, sizeof(d));
        /* skip the token: the first pass checked it */
        while (j->p < j->end && (*j->p == '-' || *j->p == '+' || *j->p == '.' ||
                                 *j->p == 'e' || *j->p == 'E' ||
                                 (*j->p >= '0' && *j->p <= '9')))
            j->p++;
        *w++ = 0x11; /* number_value (2) */
        if (PyFloat_Pack8(d, w, 1) < 0) return NULL;
        return w + 8;
    }
    }
}

static PyObject *go_compact(PyObject *module, PyObject *doc);

static PyObject *json_payload(PyObject *module, PyObject *doc) {
    Sizes s;
    Json j;
    Py_ssize_t total;
    PyObject *out = NULL, *compact;
    char *end;
    if (!PyBytes_CheckExact(doc)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, got %s", Py_TYPE(doc)->tp_name);
        return NULL;
    }
    s.sizes = s.stack;
    s.len = 0;
    s.cap = (Py_ssize_t)(sizeof(s.stack) / sizeof(s.stack[0]));
    s.next = 0;
    j.p = (const unsigned char *)PyBytes_AS_STRING(doc);
    j.end = j.p + PyBytes_GET_SIZE(doc);
    j.s = &s;
    j.changed = 0;
    j_ws(&j);
    if (j.p >= j.end || *j.p != '{') goto none;
    total = j_object(&j, 1);
    if (total < 0) goto none;
    j_ws(&j);
    if (j.p != j.end) goto none;
    if (j.changed) {
        compact = go_compact(module, doc);
        if (compact == NULL) goto done;
    } else {
        compact = doc;
        Py_INCREF(compact);
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(compact);
        goto done;
    }
    j.p = (const unsigned char *)PyBytes_AS_STRING(doc);
    j_ws(&j);
    s.next = 1; /* the top object's size is `total` */
    end = w_object(&j, PyBytes_AS_STRING(out));
    if (end == NULL) {
        Py_CLEAR(out);
    } else if (end != PyBytes_AS_STRING(out) + total) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_SystemError, "Struct size mismatch");
    }
    if (out != NULL) {
        PyObject *pair = PyTuple_Pack(2, out, compact);
        Py_DECREF(out);
        out = pair;
    }
    Py_DECREF(compact);
    goto done;
none:
    if (PyErr_Occurred()) goto done; /* out of memory */
    out = Py_None;
    Py_INCREF(out);
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
/* String bytes go_compact copies as they are: all but '"', '\\', '<', '>', '&' and 0xE2. */
static unsigned char GO_PLAIN[256];

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
        } else if (GO_PLAIN[c]) {
            /* the usual string byte: skip the run */
            const unsigned char *run = p;
            while (p + 1 < end && GO_PLAIN[p[1]]) p++;
            size += p - run + 1;
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
    {"json_payload", json_payload, METH_O,
     "json_payload(doc: bytes) -> tuple[bytes, bytes] | None\n--\n\n"
     "(struct_bytes, go_compact) of a JSON object's text without decoding it; None when unusual."},
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

PyMODINIT_FUNC PyInit__structwire(void) {
    int c;
    for (c = 0; c < 256; c++) {
        STR_PLAIN[c] = c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' &&
                       c != '&';
        GO_PLAIN[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0xE2;
    }
    return PyModule_Create(&module);
}
