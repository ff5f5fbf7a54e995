/* The SMEV 3 transform over the exclusive c14n form of an element, in C.
 *
 * gateway/crypto/smev_transform.py states the rules and holds the reference
 * implementation (on the lxml tree); this is the same transform on the bytes that
 * exclusive c14n (without comments) writes, which is what SMEV 3 applies it to. c14n
 * has done most of the work: no declaration, comment or DOCTYPE, text joined around
 * comments, empty elements as start and end tag, attribute values in double quotes,
 * text and values escaped as the transform escapes them (but for the case of the hex
 * digits in &#xA; and &#xD;, written lower case here). What is left: drop
 * whitespace-only text and processing instructions, give each namespace a prefix
 * nsN from one counter where a name first needs it, and write the attributes sorted
 * by namespace URI then local name, unqualified ones last.
 *
 * transform(c14n: bytes) -> bytes | None. None when the input holds something this
 * code does not take (a prefix no declaration binds, an entity reference, a namespace
 * URI with a character reference in it, markup it does not expect): the caller then
 * runs the reference implementation, which gives the answer or the error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p;
    Py_ssize_t n;
} Str;

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_put(Buf *b, const char *p, Py_ssize_t n) {
    if (n == 0) return 0;
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *data = realloc(b->data, (size_t)cap);
        if (data == NULL) return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static int buf_str(Buf *b, Str s) { return buf_put(b, s.p, s.n); }

static int buf_cstr(Buf *b, const char *s) { return buf_put(b, s, (Py_ssize_t)strlen(s)); }

/* Escaped text or value, with &#xA; and &#xD; written as &#xa; and &#xd;. */
static int buf_escaped(Buf *b, Str s) {
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i + 5 <= s.n; i++) {
        if (s.p[i] == '&' && s.p[i + 1] == '#' && s.p[i + 2] == 'x' && s.p[i + 4] == ';' &&
            (s.p[i + 3] == 'A' || s.p[i + 3] == 'D')) {
            if (buf_put(b, s.p + start, i + 3 - start) < 0) return -1;
            if (buf_put(b, s.p[i + 3] == 'A' ? "a;" : "d;", 2) < 0) return -1;
            i += 4;
            start = i + 1;
        }
    }
    return buf_put(b, s.p + start, s.n - start);
}

/* "nsK" and then ``tail`` (snprintf costs more than the rest of a tag). */
static int buf_ns(Buf *b, int k, const char *tail) {
    char digits[12];
    int n = 0;
    do {
        digits[n++] = (char)('0' + k % 10);
        k /= 10;
    } while (k);
    char text[20] = "ns";
    int len = 2;
    while (n) text[len++] = digits[--n];
    if (buf_put(b, text, len) < 0) return -1;
    return buf_cstr(b, tail);
}

static int str_eq(Str a, Str b) { return a.n == b.n && memcmp(a.p, b.p, (size_t)a.n) == 0; }

static int str_cmp(Str a, Str b) {
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = memcmp(a.p, b.p, (size_t)n);
    if (c) return c;
    return a.n < b.n ? -1 : (a.n > b.n);
}

/* c14n's prefix bindings in scope, and the transform's URI -> nsN in scope: stacks. */
typedef struct {
    Str prefix, uri;
} Binding;

typedef struct {
    Str uri;
    int k;
} Declared;

typedef struct {
    Str prefix, local, uri, value;
    int qualified;
    int k; /* its nsN, 0 for none */
} Attr;

typedef struct {
    Py_ssize_t bindings, declared; /* stack heights before the element */
    Str name;                      /* the element's name in c14n, for the end tag check */
    int k;                         /* the element's nsN, 0 for none */
} Open;

typedef struct {
    Binding *bindings;
    Py_ssize_t n_bindings, cap_bindings;
    Declared *declared;
    Py_ssize_t n_declared, cap_declared;
    Open *open;
    Py_ssize_t n_open, cap_open;
    Attr *attrs;
    Py_ssize_t cap_attrs;
    int counter;
} State;

#define GROW(arr, n, cap)                                                     \
    do {                                                                      \
        if ((n) >= (cap)) {                                                   \
            Py_ssize_t c = (cap) ? (cap) * 2 : 16;                            \
            void *p = realloc((arr), (size_t)c * sizeof(*(arr)));             \
            if (p == NULL) return -1;                                         \
            (arr) = p;                                                        \
            (cap) = c;                                                        \
        }                                                                     \
    } while (0)

static const char XML_NS[] = "http://www.w3.org/XML/1998/namespace";

/* Prefixes are looked up in a stack, not a hash: past this many bindings or
 * declarations in scope the input goes to the Python implementation (dicts), so that
 * a document with thousands of namespaces costs no quadratic time here. */
#define MAX_IN_SCOPE 128

/* The URI c14n's ``prefix`` is bound to (a zero-length prefix: the default namespace,
 * possibly undeclared as ""); -1 when nothing binds it. */
static int resolve(State *s, Str prefix, Str *uri) {
    for (Py_ssize_t i = s->n_bindings; i-- > 0;) {
        if (str_eq(s->bindings[i].prefix, prefix)) {
            *uri = s->bindings[i].uri;
            return 0;
        }
    }
    if (prefix.n == 0) {
        uri->p = "";
        uri->n = 0;
        return 0;
    }
    if (prefix.n == 3 && memcmp(prefix.p, "xml", 3) == 0) {
        uri->p = XML_NS;
        uri->n = (Py_ssize_t)strlen(XML_NS);
        return 0;
    }
    return -1;
}

/* The nsN of ``uri``, declared now (and its declaration added to ``decls``) when none
 * is in scope. */
static int prefix_of(State *s, Str uri, Buf *decls) {
    for (Py_ssize_t i = s->n_declared; i-- > 0;) {
        if (str_eq(s->declared[i].uri, uri)) return s->declared[i].k;
    }
    if (s->n_declared >= MAX_IN_SCOPE) return -1;
    GROW(s->declared, s->n_declared, s->cap_declared);
    int k = ++s->counter;
    s->declared[s->n_declared].uri = uri;
    s->declared[s->n_declared].k = k;
    s->n_declared++;
    if (buf_cstr(decls, " xmlns:") < 0 || buf_ns(decls, k, "=\"") < 0 ||
        buf_escaped(decls, uri) < 0 || buf_put(decls, "\"", 1) < 0)
        return -1;
    return k;
}

static int attr_order(const void *a, const void *b) {
    const Attr *x = a, *y = b;
    if (x->qualified != y->qualified) return x->qualified ? -1 : 1;
    int c = str_cmp(x->uri, y->uri);
    return c ? c : str_cmp(x->local, y->local);
}

static int is_name_char(char c) {
    return c != ' ' && c != '>' && c != '=' && c != '/' && c != '"' && c != '<' && c != '\t' &&
           c != '\n' && c != '\r';
}

static void split(Str qname, Str *prefix, Str *local) {
    const char *colon = memchr(qname.p, ':', (size_t)qname.n);
    if (colon == NULL) {
        prefix->p = qname.p;
        prefix->n = 0;
        *local = qname;
    } else {
        prefix->p = qname.p;
        prefix->n = colon - qname.p;
        local->p = colon + 1;
        local->n = qname.n - prefix->n - 1;
    }
}

/* Whitespace only: space, tab, LF, and CR as c14n writes it (&#xD;). */
static int blank(Str t) {
    for (Py_ssize_t i = 0; i < t.n;) {
        char c = t.p[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            i++;
        } else if (i + 5 <= t.n && memcmp(t.p + i, "&#xD;", 5) == 0) {
            i += 5;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Text as it goes out; -1 for an entity reference (c14n writes only the five below). */
static int text(Buf *out, Str t) {
    if (blank(t)) return 0;
    for (Py_ssize_t i = 0; i < t.n; i++) {
        if (t.p[i] != '&') continue;
        Py_ssize_t rest = t.n - i;
        if (!((rest >= 5 && memcmp(t.p + i, "&amp;", 5) == 0) ||
              (rest >= 4 && memcmp(t.p + i, "&lt;", 4) == 0) ||
              (rest >= 4 && memcmp(t.p + i, "&gt;", 4) == 0) ||
              (rest >= 5 && memcmp(t.p + i, "&#xD;", 5) == 0)))
            return -1;
    }
    return buf_escaped(out, t);
}

/* One start tag, between '<' and '>' (exclusive): written to ``out``. */
static int start_tag(State *s, Buf *out, Buf *decls, const char *p, const char *end) {
    const char *q = p;
    while (q < end && is_name_char(*q)) q++;
    Str name = {p, q - p};
    if (name.n == 0) return -1;
    Py_ssize_t bindings_before = s->n_bindings, declared_before = s->n_declared;
    Py_ssize_t n_attrs = 0;
    while (q < end) {
        if (*q != ' ') return -1;
        q++;
        const char *a = q;
        while (q < end && is_name_char(*q)) q++;
        Str aname = {a, q - a};
        if (aname.n == 0 || q + 2 > end || q[0] != '=' || q[1] != '"') return -1;
        q += 2;
        const char *v = q;
        while (q < end && *q != '"') q++;
        if (q >= end) return -1;
        Str value = {v, q - v};
        q++;
        if (aname.n >= 5 && memcmp(aname.p, "xmlns", 5) == 0 &&
            (aname.n == 5 || aname.p[5] == ':')) {
            Str bound = {aname.n == 5 ? aname.p + 5 : aname.p + 6, aname.n == 5 ? 0 : aname.n - 6};
            /* One prefix declared twice on a tag: c14n of a tree built in memory whose
             * element and attribute share a prefix for two URIs. Not XML: refused. */
            if (s->n_bindings >= MAX_IN_SCOPE) return -1;
            for (Py_ssize_t i = bindings_before; i < s->n_bindings; i++) {
                if (str_eq(s->bindings[i].prefix, bound)) return -1;
            }
            GROW(s->bindings, s->n_bindings, s->cap_bindings);
            Binding *bd = &s->bindings[s->n_bindings++];
            bd->prefix = bound;
            bd->uri = value;
            /* A character reference in a URI would sort unlike its character. */
            if (memchr(value.p, '&', (size_t)value.n) != NULL) return -1;
            continue;
        }
        GROW(s->attrs, n_attrs, s->cap_attrs);
        Attr *at = &s->attrs[n_attrs++];
        split(aname, &at->prefix, &at->local);
        at->value = value;
        at->qualified = at->prefix.n > 0;
    }
    Str prefix, local, uri;
    split(name, &prefix, &local);
    if (resolve(s, prefix, &uri) < 0) return -1;
    for (Py_ssize_t i = 0; i < n_attrs; i++) {
        Attr *at = &s->attrs[i];
        if (at->qualified && resolve(s, at->prefix, &at->uri) < 0) return -1;
        if (!at->qualified) {
            at->uri.p = "";
            at->uri.n = 0;
        }
    }
    decls->len = 0;
    int k = uri.n ? prefix_of(s, uri, decls) : 0;
    if (k < 0) return -1;
    if (n_attrs > 1) qsort(s->attrs, (size_t)n_attrs, sizeof(Attr), attr_order);
    /* One attribute twice (c14n of such a tree built in memory): not XML, refused. */
    for (Py_ssize_t i = 1; i < n_attrs; i++) {
        if (attr_order(&s->attrs[i - 1], &s->attrs[i]) == 0) return -1;
    }
    /* Attribute nsN first (declarations go before attributes), then the tag. */
    for (Py_ssize_t i = 0; i < n_attrs; i++) {
        Attr *at = &s->attrs[i];
        at->k = at->qualified ? prefix_of(s, at->uri, decls) : 0;
        if (at->k < 0) return -1;
    }
    if (buf_put(out, "<", 1) < 0) return -1;
    if (k && buf_ns(out, k, ":") < 0) return -1;
    if (buf_str(out, local) < 0 || buf_put(out, decls->data, decls->len) < 0) return -1;
    for (Py_ssize_t i = 0; i < n_attrs; i++) {
        Attr *at = &s->attrs[i];
        if (buf_put(out, " ", 1) < 0) return -1;
        if (at->k && buf_ns(out, at->k, ":") < 0) return -1;
        if (buf_str(out, at->local) < 0 || buf_put(out, "=\"", 2) < 0 ||
            buf_escaped(out, at->value) < 0 || buf_put(out, "\"", 1) < 0)
            return -1;
    }
    if (buf_put(out, ">", 1) < 0) return -1;
    GROW(s->open, s->n_open, s->cap_open);
    Open *o = &s->open[s->n_open++];
    o->bindings = bindings_before;
    o->declared = declared_before;
    o->name = name;
    o->k = k;
    return 0;
}

static int end_tag(State *s, Buf *out, const char *p, const char *end) {
    if (s->n_open == 0) return -1;
    Open *o = &s->open[--s->n_open];
    Str name = {p, end - p};
    if (!str_eq(name, o->name)) return -1;
    Str prefix, local;
    split(name, &prefix, &local);
    if (buf_put(out, "</", 2) < 0) return -1;
    if (o->k && buf_ns(out, o->k, ":") < 0) return -1;
    if (buf_str(out, local) < 0 || buf_put(out, ">", 1) < 0) return -1;
    s->n_bindings = o->bindings;
    s->n_declared = o->declared;
    return 0;
}

static int run(State *s, Buf *out, Buf *decls, const char *p, Py_ssize_t n) {
    const char *end = p + n;
    while (p < end) {
        if (*p != '<') {
            const char *lt = memchr(p, '<', (size_t)(end - p));
            if (lt == NULL) lt = end;
            Str t = {p, lt - p};
            if (s->n_open == 0 && !blank(t)) return -1; /* text outside the element */
            if (s->n_open && text(out, t) < 0) return -1;
            p = lt;
            continue;
        }
        if (p + 1 < end && p[1] == '?') {
            const char *close = p + 2;
            while (close + 1 < end && !(close[0] == '?' && close[1] == '>')) close++;
            if (close + 1 >= end) return -1;
            p = close + 2; /* dropped; text on either side stays two text nodes */
            continue;
        }
        /* The tag's end: a value may hold '>' (c14n does not escape it there), never '"'. */
        const char *gt = p + 1;
        int quoted = 0;
        while (gt < end && (quoted || *gt != '>')) {
            if (*gt == '"') quoted = !quoted;
            gt++;
        }
        if (gt >= end) return -1;
        if (p + 1 < end && p[1] == '/') {
            if (end_tag(s, out, p + 2, gt) < 0) return -1;
        } else if (p + 1 < end && p[1] == '!') {
            return -1; /* a comment or CDATA: not in c14n without comments */
        } else if (start_tag(s, out, decls, p + 1, gt) < 0) {
            return -1;
        }
        p = gt + 1;
    }
    return s->n_open == 0 ? 0 : -1;
}

static PyObject *transform(PyObject *self, PyObject *arg) {
    (void)self;
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0) return NULL;
    State s = {0};
    Buf out = {0}, decls = {0};
    int failed = run(&s, &out, &decls, data, n);
    PyObject *result = NULL;
    if (failed == 0) {
        result = PyBytes_FromStringAndSize(out.data ? out.data : "", out.len);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
    free(s.bindings);
    free(s.declared);
    free(s.open);
    free(s.attrs);
    free(out.data);
    free(decls.data);
    return result;
}

static PyMethodDef methods[] = {
    {"transform", transform, METH_O,
     "The SMEV transform of an element's exclusive c14n form (bytes), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_smev_fast",
    .m_doc = "The SMEV 3 transform over exclusive c14n bytes, in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__smev_fast(void) { return PyModule_Create(&module); }
