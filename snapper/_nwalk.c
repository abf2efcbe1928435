/* snapper._nwalk: the inner loop of the layer walk in C, on a pool of pthreads (optional; see nwalk.py).
 *
 * Python lists each layer's top dir (its row ".", its markers) with snapper.walk.TreeWalker and hands the
 * subdirs it found here as a *task*: (top path, root device, top inode, [(relative path, inode)]). Threads
 * share one LIFO stack of dirs to list (depth first, so few dirs wait), each listing with getdents64 on an fd
 * opened with openat(O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_NOATIME) through its parent's fd (or, when that fd was
 * not kept, from the top fd, a PATH_MAX-sized chunk of path per openat) and checked with fstat to be the
 * inode lstat saw. Every entry gets fstatat(AT_SYMLINK_NOFOLLOW); dirs on another device or listed as mount
 * points are recorded, not descended; symlinks are read with readlinkat, never followed; only regular files
 * are opened, for a content hash, with O_NOFOLLOW|O_NONBLOCK and an fstat check. A subdir's own row is
 * written by the thread that opens it to list it: its opaque xattr is read with flistxattr/fgetxattr on
 * that checked fd (no path lookup, no /proc); if it cannot be opened the row is still written, as lstat
 * saw it.
 * Per-entry failures become error records; the walk goes on.
 *
 * Rows leave in batches of column buffers (bytes objects) that snapper.nwalk wraps into the RawBatch tuple
 * the Python walk makes, so both walks share to_record_batch and LayerTotals. The GIL is released while
 * threads walk; it is taken only to hash a file (a Python callback, so the digest is the Python walk's).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define FILE_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
#define PATH_CHUNK 3800
#define BATCH_BYTES (16u << 20)
#define DENTS_BUF (64 * 1024)

/* ------------------------------------------------------------------------------------------------------ */
/* growable byte buffers */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *data, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* tasks, dirs, batches, events */

typedef struct Err {
    struct Err *next;
    char *rel;
    const char *op;
    int err;       /* errno, or 0 for none */
    const char *msg; /* static text, or NULL: strerror */
} Err;

typedef struct Task {
    struct Task *tprev, *tnext; /* every task not yet handed back, for a clean stop */
    long id;
    char *top;
    int top_fd;
    dev_t root_dev;
    long pending; /* dirs of the task not yet listed */
    long bufs;    /* thread batches holding rows of the task */
    Err *errs, **errs_tail;
} Task;

typedef struct Node {
    struct Node *parent; /* NULL for a dir handed in by Python: name is then its whole relative path */
    Task *task;
    int fd;        /* kept after listing while subdirs wait (within the fd budget) */
    int users;     /* threads in an openat on fd */
    int listed, keep;
    int emit;      /* its row is written when it is opened (with the opaque flag read through its fd) */
    struct stat st; /* what the parent's fstatat saw, for that row */
    long pending;  /* subdirs not yet opened */
    long refs;     /* 1 until listed + live children (they need this name for their path) */
    ino_t ino;
    size_t namelen;
    char name[];
} Node;

enum { COL_MODE, COL_INO, COL_DEV, COL_NLINK, COL_UID, COL_GID, COL_SIZE, COL_BLOCKS, COL_MTIME, COL_CTIME, NCOLS };

typedef struct Batch {
    Task *task;
    size_t n;
    Buf blob, offs, cols[NCOLS];
    Buf opaque, mounts, whiteouts; /* int32 rows */
    Buf link_rows, link_offs, link_blob;
    Buf hash_rows, hash_vals;
} Batch;

typedef struct Event {
    struct Event *next;
    int kind; /* 'b' batch, 'd' task done */
    Batch *batch;
    Task *task;
} Event;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t work_cv, out_cv, space_cv;
    pthread_t *threads;
    int nthreads, started;
    /* shared state, under mu */
    Node **stack;
    size_t stack_n, stack_cap;
    int active;        /* dirs being listed */
    int idle;          /* threads waiting for work */
    int closed, stop;
    long tasks_open;
    Task *tasks;
    Event *out_head, **out_tail;
    long out_batches, max_batches;
    long fds_kept, max_fds;
    /* settings */
    int hash_mode; /* 0 none, else call hash_cb */
    PyObject *hash_cb;
    char **mps;
    size_t n_mps;
    size_t batch_rows;
    int proc_fd;
} Walker;

static void lock(Walker *w) { pthread_mutex_lock(&w->mu); }
static void unlock(Walker *w) { pthread_mutex_unlock(&w->mu); }

static void add_err(Walker *w, Task *t, const char *rel, size_t rellen, const char *op, int err, const char *msg) {
    Err *e = calloc(1, sizeof(Err));
    if (!e) return;
    e->rel = malloc(rellen + 1);
    if (!e->rel) {
        free(e);
        return;
    }
    memcpy(e->rel, rel, rellen);
    e->rel[rellen] = 0;
    e->op = op;
    e->err = err;
    e->msg = msg;
    lock(w);
    *t->errs_tail = e;
    t->errs_tail = &e->next;
    unlock(w);
}

static void push_event(Walker *w, int kind, Batch *b, Task *t) { /* under mu */
    Event *ev = calloc(1, sizeof(Event));
    if (!ev) abort();
    ev->kind = kind;
    ev->batch = b;
    ev->task = t;
    *w->out_tail = ev;
    w->out_tail = &ev->next;
    if (kind == 'b') w->out_batches++;
    pthread_cond_broadcast(&w->out_cv);
}

static void task_check_done(Walker *w, Task *t) { /* under mu */
    if (t->pending == 0 && t->bufs == 0) {
        if (t->top_fd >= 0) close(t->top_fd);
        t->top_fd = -1;
        push_event(w, 'd', NULL, t);
    }
}

static void batch_free(Batch *b) {
    if (!b) return;
    buf_free(&b->blob);
    buf_free(&b->offs);
    for (int i = 0; i < NCOLS; i++) buf_free(&b->cols[i]);
    buf_free(&b->opaque);
    buf_free(&b->mounts);
    buf_free(&b->whiteouts);
    buf_free(&b->link_rows);
    buf_free(&b->link_offs);
    buf_free(&b->link_blob);
    buf_free(&b->hash_rows);
    buf_free(&b->hash_vals);
    free(b);
}

/* Hand the thread's batch to the consumer (waits while too many are queued). */
static void flush_batch(Walker *w, Batch **bp) {
    Batch *b = *bp;
    if (!b) return;
    *bp = NULL;
    lock(w);
    while (w->out_batches >= w->max_batches && !w->stop) pthread_cond_wait(&w->space_cv, &w->mu);
    Task *t = b->task;
    if (b->n) push_event(w, 'b', b, NULL);
    else batch_free(b);
    t->bufs--;
    task_check_done(w, t);
    unlock(w);
}

static Batch *batch_for(Walker *w, Batch **bp, Task *t) {
    if (*bp && (*bp)->task != t) flush_batch(w, bp);
    if (*bp && ((*bp)->n >= w->batch_rows || (*bp)->blob.len >= BATCH_BYTES)) flush_batch(w, bp);
    if (!*bp) {
        Batch *b = calloc(1, sizeof(Batch));
        if (!b) abort();
        b->task = t;
        int32_t zero = 0;
        buf_put(&b->offs, &zero, 4);
        lock(w);
        t->bufs++;
        unlock(w);
        *bp = b;
    }
    return *bp;
}

/* ------------------------------------------------------------------------------------------------------ */
/* dirs */

static void node_release(Walker *w, Node *n) { /* under mu */
    while (n && --n->refs == 0) {
        Node *p = n->parent;
        if (n->fd >= 0) close(n->fd);
        free(n);
        n = p;
    }
}

/* close a listed node's fd when no subdir waits for it (or it is not kept) and nobody is in an openat on it */
static void node_maybe_close(Walker *w, Node *n) { /* under mu */
    if (n->fd >= 0 && n->listed && n->users == 0 && (n->pending == 0 || !n->keep)) {
        close(n->fd);
        n->fd = -1;
        if (n->keep) w->fds_kept--;
        n->keep = 0;
    }
}

static int open_noatime(int dfd, const char *path, int flags) {
    int fd = openat(dfd, path, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = openat(dfd, path, flags);
    return fd;
}

/* openat from the top fd, at most PATH_CHUNK bytes of path per call (O_PATH for the steps) */
static int open_from_top(int top_fd, const char *rel, size_t len) {
    char *tmp = malloc(len + 1);
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(tmp, rel, len);
    tmp[len] = 0;
    int fd = top_fd;
    size_t start = 0;
    long size = -1;
    size_t i = 0;
    int rc = -1;
    while (1) {
        /* the part [i, j) */
        size_t j = i;
        while (j < len && tmp[j] != '/') j++;
        if (size + 1 + (long)(j - i) > PATH_CHUNK && i > start) {
            tmp[i - 1] = 0; /* the chunk [start, i-1) */
            int step = openat(fd, tmp + start, O_PATH | O_DIRECTORY | O_CLOEXEC);
            int e = errno;
            if (fd != top_fd) close(fd);
            if (step < 0) {
                errno = e;
                goto out;
            }
            fd = step;
            start = i;
            size = -1;
        }
        size += 1 + (long)(j - i);
        if (j >= len) break;
        i = j + 1;
    }
    rc = open_noatime(fd, tmp + start, DIR_FLAGS);
    {
        int e = errno;
        if (fd != top_fd) close(fd);
        errno = e;
    }
out:
    free(tmp);
    return rc;
}

/* the node's path relative to the layer dir, into out (no trailing slash) */
static int node_path(Node *n, Buf *out) {
    out->len = 0;
    size_t total = 0, depth = 0;
    for (Node *m = n; m; m = m->parent) {
        total += m->namelen + 1;
        depth++;
    }
    if (buf_reserve(out, total + 1)) return -1;
    size_t pos = total - 1;
    for (Node *m = n; m; m = m->parent) {
        pos -= m->namelen;
        memcpy(out->p + pos, m->name, m->namelen);
        if (pos) out->p[--pos] = '/';
    }
    out->len = total - 1;
    (void)depth;
    return 0;
}

static int mp_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_mount_point(Walker *w, Task *t, const char *rel, size_t rellen, const char *name, size_t namelen,
                          Buf *tmp) {
    tmp->len = 0;
    size_t toplen = strlen(t->top);
    if (buf_reserve(tmp, toplen + rellen + namelen + 3)) return 0;
    buf_put(tmp, t->top, toplen);
    buf_put(tmp, "/", 1);
    if (rellen) {
        buf_put(tmp, rel, rellen);
        buf_put(tmp, "/", 1);
    }
    buf_put(tmp, name, namelen);
    tmp->p[tmp->len] = 0;
    char *key = tmp->p;
    return bsearch(&key, w->mps, w->n_mps, sizeof(char *), mp_cmp) != NULL;
}

/* ------------------------------------------------------------------------------------------------------ */
/* per-entry extras */

static const char *OPAQUE[] = {"trusted.overlay.opaque", "user.overlay.opaque"};

/* opaque flag from the xattrs of path (never followed) or of fd (when path is NULL); 1 if opaque */
static int check_opaque(Walker *w, Task *t, const char *path, int fd, const char *rel, size_t rellen) {
    char stackbuf[1024];
    char *names = stackbuf;
    ssize_t size = sizeof(stackbuf);
    ssize_t r;
    while (1) {
        r = path ? llistxattr(path, names, (size_t)size) : flistxattr(fd, names, (size_t)size);
        if (r >= 0 || errno != ERANGE) break;
        ssize_t need = path ? llistxattr(path, NULL, 0) : flistxattr(fd, NULL, 0);
        if (need < 0) {
            r = -1;
            break;
        }
        size = need + 64;
        if (names != stackbuf) free(names);
        names = malloc((size_t)size);
        if (!names) {
            errno = ENOMEM;
            return 0;
        }
    }
    int opaque = 0;
    if (r < 0) {
        if (errno != ENOTSUP && errno != ENOENT) add_err(w, t, rel, rellen, "listxattr", errno, NULL);
    } else {
        for (int k = 0; k < 2; k++) {
            int present = 0;
            for (ssize_t i = 0; i < r; i += (ssize_t)strlen(names + i) + 1)
                if (strcmp(names + i, OPAQUE[k]) == 0) present = 1;
            if (present) {
                char v[8];
                ssize_t n = path ? lgetxattr(path, OPAQUE[k], v, sizeof(v)) : fgetxattr(fd, OPAQUE[k], v, sizeof(v));
                opaque = (n == 1 && v[0] == 'y');
                break;
            }
        }
    }
    if (names != stackbuf) free(names);
    return opaque;
}

static const char *REPLACED_FILE = "replaced by another file between lstat and open";

/* 1 and 16 bytes in out, or 0 and an error record */
static int hash_file(Walker *w, Task *t, int dfd, const char *name, const struct stat *st, const char *rel,
                     size_t rellen, unsigned char out[16]) {
    int fd = open_noatime(dfd, name, FILE_FLAGS);
    if (fd < 0) {
        add_err(w, t, rel, rellen, "hash", errno, NULL);
        return 0;
    }
    struct stat fst;
    if (fstat(fd, &fst) != 0) {
        add_err(w, t, rel, rellen, "hash", errno, NULL);
        close(fd);
        return 0;
    }
    if (!S_ISREG(fst.st_mode) || fst.st_ino != st->st_ino || fst.st_dev != st->st_dev) {
        add_err(w, t, rel, rellen, "hash", 0, REPLACED_FILE);
        close(fd);
        return 0;
    }
    int ok = 0, err = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction(w->hash_cb, "iL", fd, (long long)fst.st_size);
    if (r && PyBytes_Check(r) && PyBytes_GET_SIZE(r) == 16) {
        memcpy(out, PyBytes_AS_STRING(r), 16);
        ok = 1;
    } else if (!r && PyErr_ExceptionMatches(PyExc_OSError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *eno = value ? PyObject_GetAttrString(value, "errno") : NULL;
        if (eno && PyLong_Check(eno)) err = (int)PyLong_AsLong(eno);
        Py_XDECREF(eno);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        PyErr_Clear();
        if (!err) err = EIO;
    } else {
        PyErr_Clear();
        err = EIO;
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
    close(fd);
    if (!ok) add_err(w, t, rel, rellen, "hash", err, NULL);
    return ok;
}

/* ------------------------------------------------------------------------------------------------------ */
/* listing one dir */

static void push_children(Walker *w, Node *parent, Node **kids, size_t nk) {
    if (!nk) return;
    lock(w);
    if (w->stack_n + nk > w->stack_cap) {
        size_t cap = w->stack_cap ? w->stack_cap : 1024;
        while (cap < w->stack_n + nk) cap *= 2;
        Node **s = realloc(w->stack, cap * sizeof(Node *));
        if (!s) abort();
        w->stack = s;
        w->stack_cap = cap;
    }
    /* reversed, so that the first name is listed first (depth first, like the Python walk) */
    for (size_t i = nk; i-- > 0;) w->stack[w->stack_n++] = kids[i];
    parent->pending += (long)nk;
    parent->refs += (long)nk;
    parent->task->pending += (long)nk;
    if (w->idle > 0) { /* wake only as many as there are new dirs (no herd on every listing) */
        if ((size_t)w->idle <= nk) pthread_cond_broadcast(&w->work_cv);
        else
            for (size_t i = 0; i < nk; i++) pthread_cond_signal(&w->work_cv);
    }
    unlock(w);
}

typedef struct {
    Batch *batch;
    Buf path, tmp, link;
    char *dents;
    Node **kids;
    size_t nkids, kids_cap;
} Local;

static int add_row(Walker *w, Local *L, Task *t, const char *rel, size_t rellen, const char *name, size_t namelen,
                   const struct stat *st) {
    Batch *b = batch_for(w, &L->batch, t);
    if (rellen) {
        buf_put(&b->blob, rel, rellen);
        buf_put(&b->blob, "/", 1);
    }
    buf_put(&b->blob, name, namelen);
    int32_t off = (int32_t)b->blob.len;
    buf_put(&b->offs, &off, 4);
    uint32_t u;
    int64_t q;
#define PUT32(c, v) (u = (uint32_t)(v), buf_put(&b->cols[c], &u, 4))
#define PUT64(c, v) (q = (int64_t)(v), buf_put(&b->cols[c], &q, 8))
    PUT32(COL_MODE, st->st_mode);
    PUT64(COL_INO, st->st_ino);
    PUT64(COL_DEV, st->st_dev);
    PUT32(COL_NLINK, st->st_nlink);
    PUT32(COL_UID, st->st_uid);
    PUT32(COL_GID, st->st_gid);
    PUT64(COL_SIZE, st->st_size);
    PUT64(COL_BLOCKS, st->st_blocks);
    PUT64(COL_MTIME, (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec);
    PUT64(COL_CTIME, (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec);
    return (int)(b->n++);
}

static void put_row(Buf *b, int row) {
    int32_t r = row;
    buf_put(b, &r, 4);
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void list_dir(Walker *w, Local *L, Node *node, int fd) {
    Task *t = node->task;
    if (node_path(node, &L->path)) return;
    /* L->path holds rel; entry paths are rel + "/" + name */
    const char *rel = L->path.p;
    size_t rellen = L->path.len;
    Buf ename = {0};
    int hashing = w->hash_mode != 0;
    while (1) {
        long nread = syscall(SYS_getdents64, fd, L->dents, DENTS_BUF);
        if (nread < 0) {
            add_err(w, t, rel, rellen, "readdir", errno, NULL);
            break;
        }
        if (nread == 0) break;
        L->nkids = 0;
        for (long pos = 0; pos < nread;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(L->dents + pos);
            pos += d->d_reclen;
            const char *name = d->d_name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
            size_t namelen = strlen(name);
            struct stat st;
            /* the entry's relative path, for error records (built when needed) */
#define ENAME() (ename.len = 0, buf_put(&ename, rel, rellen), buf_put(&ename, "/", 1), buf_put(&ename, name, namelen))
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                int e = errno;
                ENAME();
                add_err(w, t, ename.p, ename.len, "lstat", e, e == ENOENT ? "vanished during the walk" : NULL);
                continue;
            }
            if (S_ISDIR(st.st_mode) && st.st_dev == t->root_dev &&
                !(w->n_mps && is_mount_point(w, t, rel, rellen, name, namelen, &L->tmp))) {
                /* a subdir to list: its row is written by whoever opens it (see process) */
                {
                    Node *kid = malloc(sizeof(Node) + namelen + 1);
                    if (!kid) abort();
                    memset(kid, 0, sizeof(Node));
                    kid->parent = node;
                    kid->task = t;
                    kid->fd = -1;
                    kid->refs = 1;
                    kid->ino = st.st_ino;
                    kid->emit = 1;
                    kid->st = st;
                    kid->namelen = namelen;
                    memcpy(kid->name, name, namelen + 1);
                    if (L->nkids == L->kids_cap) {
                        L->kids_cap = L->kids_cap ? L->kids_cap * 2 : 64;
                        L->kids = realloc(L->kids, L->kids_cap * sizeof(Node *));
                        if (!L->kids) abort();
                    }
                    L->kids[L->nkids++] = kid;
                }
                continue;
            }
            int row = add_row(w, L, t, rel, rellen, name, namelen, &st);
            Batch *b = L->batch;
            switch (st.st_mode & S_IFMT) {
            case S_IFDIR: /* on another device or a mount point: recorded, not descended */
                put_row(&b->mounts, row);
                break;
            case S_IFLNK: {
                size_t cap = 256;
                ssize_t n;
                while (1) {
                    if (buf_reserve(&L->link, cap)) abort();
                    n = readlinkat(fd, name, L->link.p, cap);
                    if (n < 0 || (size_t)n < cap) break;
                    cap *= 2;
                }
                if (n < 0) {
                    int e = errno;
                    ENAME();
                    add_err(w, t, ename.p, ename.len, "readlink", e, NULL);
                } else {
                    put_row(&b->link_rows, row);
                    buf_put(&b->link_blob, L->link.p, (size_t)n);
                    int32_t off = (int32_t)b->link_blob.len;
                    buf_put(&b->link_offs, &off, 4);
                }
                break;
            }
            case S_IFREG:
                if (hashing) {
                    unsigned char dig[16];
                    ENAME();
                    if (hash_file(w, t, fd, name, &st, ename.p, ename.len, dig)) {
                        put_row(&b->hash_rows, row);
                        buf_put(&b->hash_vals, dig, 16);
                    }
                }
                break;
            case S_IFCHR:
                if (st.st_rdev == 0) put_row(&b->whiteouts, row);
                break;
            }
        }
        push_children(w, node, L->kids, L->nkids);
        L->nkids = 0;
    }
    buf_free(&ename);
}

/* one dir from the stack: open it (through the parent's fd, or from the top), check it, list it */
static void process(Walker *w, Local *L, Node *node) {
    Task *t = node->task;
    Node *p = node->parent;
    int fd = -1, e = 0;
    int pfd = -1;
    lock(w);
    if (p && p->fd >= 0) {
        pfd = p->fd;
        p->users++;
    }
    unlock(w);
    if (pfd >= 0) {
        fd = open_noatime(pfd, node->name, DIR_FLAGS);
        e = errno;
    } else if (t->top_fd >= 0) {
        node_path(node, &L->path);
        fd = open_from_top(t->top_fd, L->path.p, L->path.len);
        e = errno;
    } else {
        e = ENOENT;
    }
    lock(w);
    if (p) {
        if (pfd >= 0) p->users--;
        p->pending--;
        node_maybe_close(w, p);
    }
    unlock(w);
    if (fd < 0) {
        node_path(node, &L->path);
        if (node->emit) add_row(w, L, t, "", 0, L->path.p, L->path.len, &node->st);
        const char *msg = NULL;
        if (e == ENOENT) msg = "vanished during the walk";
        else if (e == ENOTDIR || e == ELOOP) msg = "no longer a directory (replaced between lstat and open): not listed";
        add_err(w, t, L->path.p, L->path.len, "scandir", e, msg);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_ino != node->ino || st.st_dev != t->root_dev) {
        close(fd);
        node_path(node, &L->path);
        if (node->emit) add_row(w, L, t, "", 0, L->path.p, L->path.len, &node->st);
        add_err(w, t, L->path.p, L->path.len, "scandir", 0,
                "replaced by another directory or a symlink between lstat and open: not listed");
        return;
    }
    if (node->emit) { /* the dir's own row, opaque read through the fd just checked (no path lookup) */
        node_path(node, &L->path);
        int row = add_row(w, L, t, "", 0, L->path.p, L->path.len, &node->st);
        if (check_opaque(w, t, NULL, fd, L->path.p, L->path.len)) put_row(&L->batch->opaque, row);
    }
    node->fd = fd; /* no child can see it before push_children, which takes mu */
    list_dir(w, L, node, fd);
    lock(w);
    node->listed = 1;
    if (node->pending > 0 && w->fds_kept < w->max_fds) {
        node->keep = 1;
        w->fds_kept++;
    }
    node_maybe_close(w, node);
    unlock(w);
}

static void *thread_main(void *arg) {
    Walker *w = arg;
    Local L;
    memset(&L, 0, sizeof(L));
    L.dents = malloc(DENTS_BUF);
    if (!L.dents) abort();
    for (;;) {
        Node *node = NULL;
        lock(w);
        for (;;) {
            if (w->stop) break;
            if (w->stack_n) {
                node = w->stack[--w->stack_n];
                break;
            }
            if (L.batch) {
                unlock(w);
                flush_batch(w, &L.batch);
                lock(w);
                continue;
            }
            if (w->closed && w->active == 0) break; /* the stack is empty and no more tasks come */
            w->idle++;
            pthread_cond_wait(&w->work_cv, &w->mu);
            w->idle--;
        }
        if (!node) {
            unlock(w);
            break;
        }
        w->active++;
        unlock(w);
        process(w, &L, node);
        lock(w);
        w->active--;
        Task *t = node->task;
        t->pending--;
        node_release(w, node);
        task_check_done(w, t);
        if (w->stack_n == 0) pthread_cond_broadcast(&w->work_cv);
        unlock(w);
    }
    if (L.batch) {
        lock(w);
        L.batch->task->bufs--;
        unlock(w);
        batch_free(L.batch);
    }
    free(L.dents);
    free(L.kids);
    buf_free(&L.path);
    buf_free(&L.tmp);
    buf_free(&L.link);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------------ */
/* the Python type */

static void walker_stop(Walker *w) {
    if (!w->started) return;
    lock(w);
    w->stop = 1;
    pthread_cond_broadcast(&w->work_cv);
    pthread_cond_broadcast(&w->space_cv);
    unlock(w);
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < w->nthreads; i++) pthread_join(w->threads[i], NULL);
    Py_END_ALLOW_THREADS
    w->started = 0;
}

static void task_free(Task *t) {
    Err *e = t->errs;
    while (e) {
        Err *n = e->next;
        free(e->rel);
        free(e);
        e = n;
    }
    if (t->top_fd >= 0) close(t->top_fd);
    free(t->top);
    free(t);
}

static void Walker_dealloc(Walker *w) {
    walker_stop(w);
    /* what is left after a stop: queued dirs, events */
    for (size_t i = 0; i < w->stack_n; i++) node_release(w, w->stack[i]); /* the threads are joined: no mu */
    free(w->stack);
    Event *ev = w->out_head;
    while (ev) {
        Event *n = ev->next;
        batch_free(ev->batch);
        free(ev);
        ev = n;
    }
    while (w->tasks) {
        Task *t = w->tasks;
        w->tasks = t->tnext;
        task_free(t);
    }
    for (size_t i = 0; i < w->n_mps; i++) free(w->mps[i]);
    free(w->mps);
    free(w->threads);
    Py_XDECREF(w->hash_cb);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->out_cv);
    pthread_cond_destroy(&w->space_cv);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static int Walker_init(Walker *w, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"threads", "hash_cb", "mount_points", "batch_rows", "proc_fd", "max_fds",
                             "max_batches", NULL};
    int threads = 4, proc_fd = 1;
    PyObject *cb = Py_None, *mps = NULL;
    Py_ssize_t batch_rows = 16384, max_fds = 512, max_batches = 8;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOO|npnn", kwlist, &threads, &cb, &mps, &batch_rows, &proc_fd,
                                     &max_fds, &max_batches))
        return -1;
    if (w->threads) {
        PyErr_SetString(PyExc_RuntimeError, "Walker already initialised");
        return -1;
    }
    if (threads < 1) threads = 1;
    PyObject *seq = PySequence_Fast(mps, "mount_points must be a sequence of bytes");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    w->mps = calloc((size_t)n + 1, sizeof(char *));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(o)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "mount_points must be bytes");
            return -1;
        }
        w->mps[w->n_mps++] = strdup(PyBytes_AS_STRING(o));
    }
    Py_DECREF(seq);
    qsort(w->mps, w->n_mps, sizeof(char *), mp_cmp);
    if (cb != Py_None) {
        Py_INCREF(cb);
        w->hash_cb = cb;
        w->hash_mode = 1;
    }
    w->batch_rows = batch_rows > 0 ? (size_t)batch_rows : 1;
    w->proc_fd = proc_fd;
    w->max_fds = max_fds;
    w->max_batches = max_batches > 0 ? max_batches : 1;
    w->out_tail = &w->out_head;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work_cv, NULL);
    pthread_cond_init(&w->out_cv, NULL);
    pthread_cond_init(&w->space_cv, NULL);
    w->threads = calloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        int rc = pthread_create(&w->threads[i], &attr, thread_main, w);
        pthread_attr_destroy(&attr);
        if (rc) {
            w->nthreads = i;
            w->started = 1;
            walker_stop(w);
            errno = rc;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    w->nthreads = threads;
    w->started = 1;
    return 0;
}

/* add(task_id, top, root_dev, top_ino, dirs=[(rel bytes, ino)]) */
static PyObject *Walker_add(Walker *w, PyObject *args) {
    long id;
    const char *top;
    Py_ssize_t toplen;
    unsigned long long root_dev, top_ino;
    PyObject *dirs;
    if (!PyArg_ParseTuple(args, "ly#KKO", &id, &top, &toplen, &root_dev, &top_ino, &dirs)) return NULL;
    PyObject *seq = PySequence_Fast(dirs, "dirs must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Node **nodes = calloc((size_t)n + 1, sizeof(Node *));
    Task *t = calloc(1, sizeof(Task));
    t->id = id;
    t->top = strndup(top, (size_t)toplen);
    t->root_dev = (dev_t)root_dev;
    t->errs_tail = &t->errs;
    t->top_fd = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *rel;
        Py_ssize_t rellen;
        unsigned long long ino;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y#K", &rel, &rellen, &ino)) {
            for (Py_ssize_t k = 0; k < i; k++) free(nodes[k]);
            free(nodes);
            task_free(t);
            Py_DECREF(seq);
            return NULL;
        }
        Node *nd = calloc(1, sizeof(Node) + (size_t)rellen + 1);
        nd->task = t;
        nd->fd = -1;
        nd->refs = 1;
        nd->ino = (ino_t)ino;
        nd->namelen = (size_t)rellen;
        memcpy(nd->name, rel, (size_t)rellen);
        nodes[i] = nd;
    }
    Py_DECREF(seq);
    int fd = open_noatime(AT_FDCWD, t->top, DIR_FLAGS);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_dev != t->root_dev || st.st_ino != (ino_t)top_ino)) {
        close(fd);
        fd = -1;
    }
    t->top_fd = fd;
    lock(w);
    w->tasks_open++;
    t->tnext = w->tasks;
    if (w->tasks) w->tasks->tprev = t;
    w->tasks = t;
    if (fd < 0) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Err *e = calloc(1, sizeof(Err));
            e->rel = strndup(nodes[i]->name, nodes[i]->namelen);
            e->op = "scandir";
            e->msg = "its layer dir vanished during the walk";
            *t->errs_tail = e;
            t->errs_tail = &e->next;
            free(nodes[i]);
        }
        n = 0;
    }
    if (w->stack_n + (size_t)n > w->stack_cap) {
        size_t cap = w->stack_cap ? w->stack_cap : 1024;
        while (cap < w->stack_n + (size_t)n) cap *= 2;
        w->stack = realloc(w->stack, cap * sizeof(Node *));
        w->stack_cap = cap;
    }
    for (Py_ssize_t i = n; i-- > 0;) w->stack[w->stack_n++] = nodes[i];
    t->pending = n;
    task_check_done(w, t);
    pthread_cond_broadcast(&w->work_cv);
    unlock(w);
    free(nodes);
    Py_RETURN_NONE;
}

static PyObject *Walker_close_input(Walker *w, PyObject *Py_UNUSED(ignored)) {
    lock(w);
    w->closed = 1;
    pthread_cond_broadcast(&w->work_cv);
    pthread_cond_broadcast(&w->out_cv);
    unlock(w);
    Py_RETURN_NONE;
}

static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len); }

static PyObject *rows_list(Buf *b) {
    size_t n = b->len / 4;
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) PyList_SET_ITEM(l, (Py_ssize_t)i, PyLong_FromLong(((int32_t *)b->p)[i]));
    return l;
}

static PyObject *batch_tuple(Batch *b) {
    size_t n = b->n;
    Task *t = b->task;
    uint32_t *mode = (uint32_t *)b->cols[COL_MODE].p, *nlink = (uint32_t *)b->cols[COL_NLINK].p;
    int64_t *ino = (int64_t *)b->cols[COL_INO].p, *dev = (int64_t *)b->cols[COL_DEV].p;
    int64_t *size = (int64_t *)b->cols[COL_SIZE].p, *blocks = (int64_t *)b->cols[COL_BLOCKS].p;
    /* du-style sums, as TreeWalker._totals: no other-device entries or mount points; hard-linked non-dirs
       apart, by inode */
    char *skip = calloc(n + 1, 1);
    if (!skip) return PyErr_NoMemory();
    for (size_t i = 0; i < b->mounts.len / 4; i++) skip[((int32_t *)b->mounts.p)[i]] = 1;
    long long apparent = 0, used = 0;
    PyObject *linked = PyDict_New();
    if (!linked) {
        free(skip);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (skip[i] || (dev_t)dev[i] != t->root_dev) continue;
        if (nlink[i] > 1 && (mode[i] & S_IFMT) != S_IFDIR) {
            PyObject *k = PyLong_FromLongLong(ino[i]);
            if (!PyDict_Contains(linked, k)) {
                PyObject *v = Py_BuildValue("(LL)", (long long)size[i], (long long)blocks[i] * 512);
                PyDict_SetItem(linked, k, v);
                Py_DECREF(v);
            }
            Py_DECREF(k);
            continue;
        }
        apparent += size[i];
        used += blocks[i];
    }
    free(skip);
    size_t nl = b->link_rows.len / 4;
    PyObject *links = PyList_New((Py_ssize_t)nl);
    int32_t prev = 0;
    for (size_t i = 0; i < nl; i++) {
        int32_t end = ((int32_t *)b->link_offs.p)[i];
        PyList_SET_ITEM(links, (Py_ssize_t)i,
                        Py_BuildValue("(iy#)", ((int32_t *)b->link_rows.p)[i], b->link_blob.p + prev,
                                      (Py_ssize_t)(end - prev)));
        prev = end;
    }
    size_t nh = b->hash_rows.len / 4;
    PyObject *hashes = PyList_New((Py_ssize_t)nh);
    for (size_t i = 0; i < nh; i++)
        PyList_SET_ITEM(hashes, (Py_ssize_t)i,
                        Py_BuildValue("(iy#)", ((int32_t *)b->hash_rows.p)[i], b->hash_vals.p + 16 * i, (Py_ssize_t)16));
    PyObject *cols = PyTuple_New(NCOLS);
    for (int c = 0; c < NCOLS; c++) PyTuple_SET_ITEM(cols, c, bytes_of(&b->cols[c]));
    return Py_BuildValue("(slnNNNNNNNNLLN)", "b", t->id, (Py_ssize_t)n, bytes_of(&b->blob), bytes_of(&b->offs), cols,
                         rows_list(&b->opaque), rows_list(&b->mounts), rows_list(&b->whiteouts), links, hashes,
                         apparent, used * 512, linked);
}

static PyObject *done_tuple(Task *t) {
    PyObject *errs = PyList_New(0);
    for (Err *e = t->errs; e; e = e->next) {
        PyObject *eno = e->err ? PyLong_FromLong(e->err) : Py_NewRef(Py_None);
        PyObject *msg = e->msg ? PyUnicode_FromString(e->msg) : Py_NewRef(Py_None);
        PyObject *row = Py_BuildValue("(y#sNN)", e->rel, (Py_ssize_t)strlen(e->rel), e->op, eno, msg);
        PyList_Append(errs, row);
        Py_DECREF(row);
    }
    return Py_BuildValue("(slN)", "d", t->id, errs);
}

/* next(block=True): ("b", task, n, paths, offsets, (10 stat columns), opaque, mounts, whiteouts,
   [(row, link target)], [(row, digest)], apparent, allocated, {inode: (size, allocated)}), or
   ("d", task, [(rel, op, errno, message)]) when a task is done; None when nothing is left (block) or
   nothing is ready yet (not block). */
static PyObject *Walker_next(Walker *w, PyObject *args) {
    int block = 1;
    if (!PyArg_ParseTuple(args, "|p", &block)) return NULL;
    Event *ev = NULL;
    Py_BEGIN_ALLOW_THREADS
    lock(w);
    for (;;) {
        if (w->out_head) {
            ev = w->out_head;
            w->out_head = ev->next;
            if (!w->out_head) w->out_tail = &w->out_head;
            if (ev->kind == 'b') {
                w->out_batches--;
                pthread_cond_broadcast(&w->space_cv);
            } else {
                Task *t = ev->task;
                w->tasks_open--;
                if (t->tprev) t->tprev->tnext = t->tnext;
                else w->tasks = t->tnext;
                if (t->tnext) t->tnext->tprev = t->tprev;
            }
            break;
        }
        if (!block || w->stop || (w->closed && w->tasks_open == 0)) break;
        pthread_cond_wait(&w->out_cv, &w->mu);
    }
    unlock(w);
    Py_END_ALLOW_THREADS
    if (!ev) Py_RETURN_NONE;
    PyObject *r;
    if (ev->kind == 'b') {
        r = batch_tuple(ev->batch);
        batch_free(ev->batch);
    } else {
        r = done_tuple(ev->task);
        task_free(ev->task);
    }
    free(ev);
    return r;
}

static PyObject *Walker_close(Walker *w, PyObject *Py_UNUSED(ignored)) {
    walker_stop(w);
    Py_RETURN_NONE;
}

static PyMethodDef Walker_methods[] = {
    {"add", (PyCFunction)Walker_add, METH_VARARGS, "add(task_id, top, root_dev, top_ino, [(rel, ino)])"},
    {"close_input", (PyCFunction)Walker_close_input, METH_NOARGS, "no more tasks"},
    {"next", (PyCFunction)Walker_next, METH_VARARGS, "next(block=True): the next batch or task-done event"},
    {"close", (PyCFunction)Walker_close, METH_NOARGS, "stop the threads"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "snapper._nwalk.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Walker_init,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_methods = Walker_methods,
    .tp_doc = "A pool of walk threads (see snapper.nwalk).",
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_nwalk", "The native inner loop of the walk.", -1, NULL};

PyMODINIT_FUNC PyInit__nwalk(void) {
    if (PyType_Ready(&WalkerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(m, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
