"""Every Arrow schema of a snapshot, in one place, with a description per field.

A snapshot is a directory with one zstd Parquet file per table below and a ``manifest.json``.
``SCHEMA_VERSION`` changes whenever a table or column changes meaning; readers refuse other versions.
``SCHEMA_MINOR`` counts additive revisions within a version: a table added at revision N has ``since=N``; a
snapshot written at an older revision has no file for it and reads it as empty (old series stay readable).
The README's schema section is generated from ``TABLES`` (``snapper.schema.markdown()``) and a test
keeps the two in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1
SCHEMA_MINOR = 2

_STR = pa.string()
_DSTR = pa.dictionary(pa.int32(), pa.string())
_I64 = pa.int64()
_U32 = pa.uint32()
_BOOL = pa.bool_()
_LSTR = pa.list_(pa.field("element", pa.string()))  # Parquet names list items "element"


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[tuple[str, pa.DataType, str], ...]
    since: int = 1  # the SCHEMA_MINOR that added the table

    @property
    def schema(self) -> pa.Schema:
        fields = [
            pa.field(name, typ, nullable=True, metadata={"description": desc})
            for name, typ, desc in self.columns
        ]
        return pa.schema(fields, metadata={"table": self.name, "schema_version": str(SCHEMA_VERSION)})

    @property
    def column_names(self) -> list[str]:
        return [c[0] for c in self.columns]


FILES = Table(
    "files",
    "One row per entry under each overlay2/<dir> (the dir itself is path '.'), walked with lstat only.",
    (
        ("layer_id", _DSTR, "name of the overlay2 entry this row belongs to"),
        ("path", _STR, "path relative to the layer dir; bytes that are not UTF-8 shown as \\xNN"),
        ("path_raw", pa.binary(), "exact path bytes, only when the name is not valid UTF-8 (else null)"),
        ("type", _DSTR, "f file, d dir, l symlink, c char dev, b block dev, p fifo, s socket, ? other"),
        ("size", _I64, "st_size (apparent bytes)"),
        ("allocated", _I64, "st_blocks * 512"),
        ("inode", _I64, "st_ino"),
        ("dev", _I64, "st_dev"),
        ("nlink", _U32, "st_nlink"),
        ("mode", _U32, "st_mode (type and permission bits)"),
        ("uid", _U32, "st_uid"),
        ("gid", _U32, "st_gid"),
        ("mtime_ns", _I64, "st_mtime_ns"),
        ("ctime_ns", _I64, "st_ctime_ns"),
        ("whiteout", _BOOL, "overlay whiteout: char device 0/0"),
        ("opaque", _BOOL, "overlay opaque dir (trusted.overlay.opaque or user.overlay.opaque = y)"),
        ("mount_point", _BOOL, "a dir on another mount (not descended), e.g. merged/ of a running container"),
        ("link_target", _STR, "symlink target as stored (never followed); non-UTF-8 bytes as \\xNN"),
        ("hash", pa.binary(16), "xxh3_128 of the content per --hash (partial: size+first+last 64 KiB)"),
    ),
)

LAYERS = Table(
    "layers",
    "One row per entry directly under overlay2/ (including l/), with markers and du-style totals.",
    (
        ("layer_id", _STR, "entry name under overlay2/"),
        ("name_class", _STR, "hex64 | hex64-init | buildkit25 | links (the l/ dir) | other"),
        ("entry_type", _STR, "file type of the entry itself (d for a normal layer dir)"),
        ("has_diff", _BOOL, "diff/ exists"),
        ("has_link", _BOOL, "link file exists"),
        ("has_lower", _BOOL, "lower file exists"),
        ("has_work", _BOOL, "work/ exists"),
        ("has_merged", _BOOL, "merged/ exists"),
        ("has_committed", _BOOL, "committed marker exists (this dir is a parent of another layer)"),
        ("link_id", _STR, "content of the link file: the 26-char short id in l/"),
        ("lower", _STR, "raw content of the lower file (colon-separated l/<short>)"),
        ("lower_ids", _LSTR, "lower chain resolved to layer ids, nearest parent first (null where unresolved)"),
        ("lower_unresolved", _I64, "lower entries whose l/ link is missing or does not point at a dir"),
        ("mounted", _BOOL, "merged/ (or the dir) is a mount point in /proc/self/mountinfo now"),
        ("file_count", _I64, "entries walked including the dir itself (what `find DIR -xdev` lists)"),
        ("apparent_bytes", _I64, "sum of st_size, each inode once"),
        ("allocated_bytes", _I64, "sum of st_blocks*512, each inode once (`du -sx -B1 DIR`)"),
        ("dir_inode", _I64, "inode of the layer dir"),
        ("dir_mtime_ns", _I64, "mtime of the layer dir"),
        ("dir_ctime_ns", _I64, "ctime of the layer dir"),
        ("diff_mtime_ns", _I64, "mtime of diff/"),
        ("diff_ctime_ns", _I64, "ctime of diff/"),
        ("link_mtime_ns", _I64, "mtime of the link file (about when the dir was created)"),
        ("link_ctime_ns", _I64, "ctime of the link file"),
        ("walk_status", _STR, "ok | partial (some entries failed, see errors) | vanished | error"),
        ("walk_errors", _I64, "number of errors rows for this layer"),
    ),
)

LINKS = Table(
    "links",
    "Symlinks in overlay2/l/ (short id -> ../<dir>/diff).",
    (
        ("short_id", _STR, "symlink name"),
        ("target", _STR, "symlink target as stored"),
        ("target_layer_id", _STR, "<dir> parsed from ../<dir>/diff (null if the target has another shape)"),
        ("well_formed", _BOOL, "target has the shape ../<dir>/diff"),
        ("dangling", _BOOL, "the target does not exist"),
        ("is_symlink", _BOOL, "false for a non-symlink entry in l/"),
    ),
)

LAYERDB = Table(
    "layerdb",
    "image/<driver>/layerdb/sha256/<chain>: read-only layers of the layer store.",
    (
        ("dir_name", _STR, "directory name (the chain id hex, or <chain>-<rand>-removing)"),
        ("chain_id", _STR, "sha256:<chain id>"),
        ("diff_id", _STR, "content of the diff file"),
        ("parent", _STR, "content of the parent file (null for a base layer)"),
        ("cache_id", _STR, "content of the cache-id file: the overlay2 dir name"),
        ("size", _I64, "content of the size file"),
        ("removing", _BOOL, "a -removing leftover of an interrupted delete (20.10+)"),
        ("has_tar_split", _BOOL, "tar-split.json.gz exists"),
        ("mtime_ns", _I64, "mtime of the directory"),
        ("problem", _STR, "why the entry is malformed (null when fine)"),
    ),
)

MOUNTS = Table(
    "mounts",
    "image/<driver>/layerdb/mounts/<name>: read-write layers (containers, BuildKit transient mounts).",
    (
        ("name", _STR, "container id, or a 25-char BuildKit id for transient mounts"),
        ("name_class", _STR, "hex64 | buildkit25 | other"),
        ("mount_id", _STR, "overlay2 dir of the RW layer"),
        ("init_id", _STR, "overlay2 dir of the init layer (null for BuildKit mounts)"),
        ("parent", _STR, "sha256:<chain id> of the image top layer (null for FROM scratch)"),
        ("mtime_ns", _I64, "mtime of the directory"),
        ("problem", _STR, "why the entry is malformed (null when fine)"),
    ),
)

IMAGES = Table(
    "images",
    "image/<driver>/imagedb/content/sha256/<id>: image configs, with derived chain ids.",
    (
        ("image_id", _STR, "sha256:<id> (the file name)"),
        ("digest_ok", _BOOL, "sha256 of the file equals its name"),
        ("created", _STR, "config 'created' timestamp as written"),
        ("diff_ids", _LSTR, "rootfs.diff_ids"),
        ("chain_ids", _LSTR, "chain id of every prefix of diff_ids"),
        ("top_chain_id", _STR, "last element of chain_ids (null for an image without layers)"),
        ("parent", _STR, "imagedb/metadata/<id>/parent (legacy builder intermediate images)"),
        ("last_updated", _STR, "imagedb/metadata/<id>/lastUpdated"),
        ("tags", _LSTR, "references from repositories.json"),
        ("mtime_ns", _I64, "mtime of the config file"),
        ("problem", _STR, "why the config could not be used (null when fine)"),
    ),
)

TAGS = Table(
    "tags",
    "repositories.json: every reference -> image id (tags to missing images included).",
    (
        ("repository", _STR, "repository name"),
        ("ref", _STR, "reference (repo:tag or repo@digest)"),
        ("image_id", _STR, "sha256:<image id>"),
    ),
)

CONTAINERS = Table(
    "containers",
    "containers/<id>/config.v2.json (never environment or label values).",
    (
        ("container_id", _STR, "directory name"),
        ("name", _STR, "container name"),
        ("image", _STR, "image id"),
        ("driver", _STR, "storage driver recorded for the container"),
        ("state", _STR, "running | paused | restarting | dead | removing | exited | created"),
        ("running", _BOOL, "State.Running"),
        ("dead", _BOOL, "State.Dead"),
        ("removal_in_progress", _BOOL, "State.RemovalInProgress (persisted up to 28.1)"),
        ("created", _STR, "Created timestamp"),
        ("config_present", _BOOL, "config.v2.json exists"),
        ("mtime_ns", _I64, "mtime of config.v2.json (or of the dir when missing)"),
        ("problem", _STR, "missing or corrupt config (null when fine)"),
    ),
)

WRITE_SETS = Table(
    "write_sets",
    "image/<driver>/layerdb/tmp/*: transactions of interrupted layer registrations.",
    (
        ("name", _STR, "entry name (write-set-<n>)"),
        ("entry_type", _STR, "file type"),
        ("files", _I64, "entries inside"),
        ("bytes", _I64, "apparent bytes inside"),
        ("mtime_ns", _I64, "mtime of the entry"),
        ("ctime_ns", _I64, "ctime of the entry"),
    ),
)

MOUNTINFO = Table(
    "mountinfo",
    "Mounts at or under the data root, from /proc/self/mountinfo at collection time.",
    (
        ("mount_id", _I64, "mount id"),
        ("parent_id", _I64, "parent mount id"),
        ("major_minor", _STR, "st_dev of the mount"),
        ("root", _STR, "root of the mount within its filesystem"),
        ("mount_point", _STR, "mount point (octal escapes decoded)"),
        ("rel_path", _STR, "mount point relative to the data root"),
        ("fstype", _STR, "filesystem type"),
        ("source", _STR, "mount source"),
        ("options", _STR, "per-mount options"),
        ("super_options", _STR, "per-superblock options (overlay: lowerdir, upperdir, workdir)"),
        ("upperdir", _STR, "overlay upperdir, when present"),
        ("layer_id", _STR, "overlay2 dir this mount belongs to (mount point or upperdir), when any"),
    ),
)

BUILDKIT_RECORDS = Table(
    "buildkit_records",
    "BuildKit cache records (buildkit/metadata_v2.db _main): the liveness roots of build cache.",
    (
        ("db", _STR, "database file relative to the data root"),
        ("record_id", _STR, "record id (25-char)"),
        ("record_type", _STR, "cache.recordType (regular when absent)"),
        ("description", _STR, "cache.description"),
        ("parent", _STR, "cache.parent record id"),
        ("equal_mutable", _STR, "cache.equalMutable: the mutable twin record"),
        ("snapshot_key", _STR, "cache.snapshot, else the record id"),
        ("deleted", _BOOL, "cache.deleted: marked for deletion"),
        ("committed", _BOOL, "snapshot.committed"),
        ("chain_id", _STR, "cache.chainID"),
        ("blob_chain_id", _STR, "cache.blobChainID"),
        ("diff_id", _STR, "cache.diffID"),
        ("blob_only", _BOOL, "cache.blobonly"),
        ("created_ns", _I64, "cache.createdAt (unix ns)"),
        ("last_used_ns", _I64, "cache.lastUsedAt (unix ns)"),
        ("usage_count", _I64, "cache.usageCount"),
        ("size", _I64, "snapshot.size"),
    ),
)

BUILDKIT_SNAPSHOTS = Table(
    "buildkit_snapshots",
    "BuildKit graphdriver snapshot keys (buildkit/snapshots.db): a mapping key -> graph dir, not a root.",
    (
        ("key", _STR, "snapshot key"),
        ("parent", _STR, "parent key (25-char, or sha256:<chain> for an image layer)"),
        ("committed", _STR, "active key whose overlay2 dir holds the data (committed names only)"),
        ("is_committed", _BOOL, "iscommitted marker (an active key that was committed)"),
        ("chain_id", _STR, "chainid: layer-store chain registered for this key"),
        ("size", _I64, "cached size"),
    ),
)

LEASES = Table(
    "leases",
    "containerd-format leases: buildkit/containerdmeta.db (BuildKit) and containerd meta.db files.",
    (
        ("db", _STR, "database file"),
        ("namespace", _STR, "namespace (buildkit, moby, ...)"),
        ("lease_id", _STR, "lease id"),
        ("snapshotter", _STR, "snapshotter of a held snapshot (null when the lease holds none)"),
        ("snapshot_key", _STR, "held snapshot key"),
        ("expire", _STR, "containerd.io/gc.expire label"),
    ),
)

CONTAINERD_SNAPSHOTS = Table(
    "containerd_snapshots",
    "containerd overlayfs snapshotter records (metadata.db) joined with snapshots/<n> dirs.",
    (
        ("store", _STR, "containerd root (containerd/daemon under the data root, or /var/lib/containerd)"),
        ("backend_key", _STR, "<namespace>/<seq>/<key> (null for a dir without a record)"),
        ("namespace", _STR, "namespace part of the backend key"),
        ("key", _STR, "snapshot key"),
        ("snapshot_id", _I64, "id = the snapshots/<n> dir name"),
        ("kind", _STR, "view | active | committed"),
        ("parent_key", _STR, "backend key of the parent"),
        ("dir", _STR, "snapshots/<n> dir when present"),
        ("dir_exists", _BOOL, "the dir exists"),
    ),
)

CTR_STORES = Table(
    "ctr_stores",
    "Each containerd root collected (the dockerd-managed one under the data root, a system one, or "
    "--containerd-root), with the containerd process serving it and the state of its two databases.",
    (
        ("store", _STR, "how the store shows in other tables: containerd/daemon, or the absolute root path"),
        ("path", _STR, "absolute path of the containerd root"),
        ("kind", _STR, "managed (dockerd's own containerd) | system (a containerd of its own)"),
        ("pid", _I64, "the containerd process serving it (null when none runs)"),
        ("started_ns", _I64, "when that process started (ns since epoch); for a managed store, dockerd's start"),
        ("meta_status", _STR, "ok | missing | error: <why> (io.containerd.metadata.v1.bolt/meta.db)"),
        ("snapshotter_status", _STR, "ok | missing | error: <why> (the overlayfs snapshotter's metadata.db)"),
        ("content_status", _STR, "ok | missing | error: <why> (io.containerd.content.v1.content)"),
    ),
    since=2,
)

CTR_OBJECTS = Table(
    "ctr_objects",
    "Every object of every namespace of a containerd meta.db (containerd core/metadata/buckets.go): images, "
    "containers, leases, snapshots, content blobs, ingests, sandboxes.",
    (
        ("store", _STR, "containerd store (see ctr_stores)"),
        ("namespace", _STR, "namespace: moby, moby_history, k8s.io, default, buildkit, ..."),
        ("type", _STR, "image | container | lease | snapshot | content | ingest | sandbox"),
        ("key", _STR, "image name, container id, lease id, snapshot key, blob digest or ingest ref"),
        ("snapshotter", _STR, "snapshotter of a snapshot or of a container's snapshot"),
        ("target", _STR, "image: target digest; container: snapshot key; snapshot: backend name "
                         "(<namespace>/<seq>/<key> in the snapshotter's metadata.db); ingest: expected digest"),
        ("parent", _STR, "snapshot: parent snapshot key; ingest: its content/ingest/<dir> name (sha256 of the "
                         "backend ref)"),
        ("size", _I64, "content: blob size"),
        ("created_ns", _I64, "createdat (ns since epoch)"),
        ("updated_ns", _I64, "updatedat (ns since epoch)"),
        ("expire_ns", _I64, "ingest: expireat; others: the containerd.io/gc.expire label, when it parses"),
    ),
    since=2,
)

CTR_LABELS = Table(
    "ctr_labels",
    "The labels of the objects in ctr_objects (the GC follows containerd.io/gc.* labels).",
    (
        ("store", _STR, "containerd store"),
        ("namespace", _STR, "namespace"),
        ("type", _STR, "type of the labelled object"),
        ("key", _STR, "key of the labelled object"),
        ("snapshotter", _STR, "snapshotter, for a snapshot"),
        ("label", _STR, "label name"),
        ("value", _STR, "label value"),
    ),
    since=2,
)

CTR_LEASE_RESOURCES = Table(
    "ctr_lease_resources",
    "What each lease holds: content blobs, snapshots and ingests (meta.db leases/<id>/{content,snapshots,ingests}).",
    (
        ("store", _STR, "containerd store"),
        ("namespace", _STR, "namespace"),
        ("lease_id", _STR, "lease id"),
        ("type", _STR, "content | snapshot | ingest"),
        ("snapshotter", _STR, "snapshotter of a held snapshot"),
        ("key", _STR, "digest, snapshot key or ingest ref"),
    ),
    since=2,
)

CTR_DIRS = Table(
    "ctr_dirs",
    "One row per entry of a snapshotter's snapshots/ dir and of the content store (blobs/sha256/*, ingest/*), "
    "with its size; a snapshot dir's files are in the files table under layer_id = dir_id.",
    (
        ("store", _STR, "containerd store"),
        ("kind", _STR, "snapshot | blob | ingest"),
        ("name", _STR, "snapshots/<n> id, blob digest (sha256:<hex>) or ingest dir name"),
        ("dir_id", _STR, "the files table layer_id of a snapshot dir: <store>/snapshots/<n>"),
        ("path", _STR, "path relative to the data root (absolute for a store outside it)"),
        ("bytes", _I64, "allocated bytes (hard links once per dir)"),
        ("apparent_bytes", _I64, "apparent bytes"),
        ("files", _I64, "entries"),
        ("mtime_ns", _I64, "mtime of the entry itself"),
        ("ctime_ns", _I64, "ctime of the entry itself"),
        ("walk_status", _STR, "ok | error | vanished"),
    ),
    since=2,
)

RESIDUE = Table(
    "residue",
    "Entries outside overlay2/ that hold only transient or dormant state (executor bundles, old drivers).",
    (
        ("kind", _STR, "buildkit_executor | dormant_driver_tree | daemon_tmp"),
        ("path", _STR, "path relative to the data root"),
        ("entry_type", _STR, "file type"),
        ("mtime_ns", _I64, "mtime"),
        ("files", _I64, "entries inside"),
        ("bytes", _I64, "apparent bytes inside"),
    ),
)

LAYER_SIGNATURES = Table(
    "layer_signatures",
    "Per overlay2 entry, the top signature an incremental collect compares before it reuses a dir's rows.",
    (
        ("layer_id", _STR, "entry name under overlay2/"),
        ("top_signature", _STR, "xxh64 of the lstat of the dir and all in it but inside diff/, before the walk"),
    ),
    since=2,
)

HOLDERS = Table(
    "holders",
    "Processes with an open fd, cwd or root under the data root when the collect ran (/proc/*/fd, cwd, root).",
    (
        ("pid", _I64, "process id"),
        ("comm", _STR, "process name (/proc/<pid>/comm)"),
        ("how", _STR, "fd | cwd | root"),
        ("path", _STR, "held path, relative to the data root"),
        ("layer_id", _STR, "overlay2 dir the path is in (null outside overlay2/)"),
    ),
    since=2,
)

API_IMAGES = Table(
    "api_images",
    "Engine API view (cross-check only): GET /images/json + /images/{id}/json.",
    (
        ("image_id", _STR, "Id"),
        ("tags", _LSTR, "RepoTags"),
        ("size", _I64, "Size"),
        ("graph_driver", _STR, "GraphDriver.Name"),
        ("upper_dir", _STR, "GraphDriver.Data.UpperDir"),
        ("lower_dir", _STR, "GraphDriver.Data.LowerDir"),
        ("top_layer_id", _STR, "overlay2 dir of UpperDir"),
        ("lower_layer_ids", _LSTR, "overlay2 dirs of LowerDir"),
    ),
)

API_CONTAINERS = Table(
    "api_containers",
    "Engine API view (cross-check only): GET /containers/json?all=1 + /containers/{id}/json.",
    (
        ("container_id", _STR, "Id"),
        ("name", _STR, "Name"),
        ("image_id", _STR, "Image"),
        ("state", _STR, "State.Status"),
        ("upper_dir", _STR, "GraphDriver.Data.UpperDir"),
        ("lower_dir", _STR, "GraphDriver.Data.LowerDir"),
        ("mount_layer_id", _STR, "overlay2 dir of UpperDir (the mount-id)"),
        ("init_layer_id", _STR, "first LowerDir entry when it is an -init dir"),
        ("size_rw", _I64, "SizeRw (null since schema 1.2: only /system/df reports it)"),
    ),
)

API_BUILD_CACHE = Table(
    "api_build_cache",
    "Not filled since schema 1.2: GET /system/df changes the store (BuildKit records come from its DBs).",
    (
        ("id", _STR, "record ID"),
        ("type", _STR, "Type"),
        ("description", _STR, "Description"),
        ("size", _I64, "Size"),
        ("in_use", _BOOL, "InUse"),
        ("shared", _BOOL, "Shared"),
        ("created_at", _STR, "CreatedAt"),
        ("last_used_at", _STR, "LastUsedAt"),
        ("parents", _LSTR, "Parents (or Parent)"),
    ),
)

API_DF = Table(
    "api_df",
    "Not filled since schema 1.2: GET /system/df changes the store (the reconciliation computes it).",
    (
        ("kind", _STR, "images | containers | volumes | build_cache"),
        ("total_count", _I64, "objects"),
        ("active", _I64, "objects in use"),
        ("size", _I64, "bytes as the CLI sums them (build cache: non-shared records only)"),
        ("reclaimable", _I64, "bytes the CLI calls reclaimable"),
    ),
)

ERRORS = Table(
    "errors",
    "Every per-entry failure; the collect goes on.",
    (
        ("source", _STR, "walk | layerdb | mounts | images | tags | containers | ... | api"),
        ("object", _STR, "path or object name (relative to the data root when under it)"),
        ("op", _STR, "lstat | scandir | open | read | parse | hash | request ..."),
        ("errno", _I64, "errno when an OSError (null otherwise)"),
        ("message", _STR, "one-line description"),
    ),
)

TABLES: tuple[Table, ...] = (
    FILES,
    LAYERS,
    LINKS,
    LAYERDB,
    MOUNTS,
    IMAGES,
    TAGS,
    CONTAINERS,
    WRITE_SETS,
    MOUNTINFO,
    BUILDKIT_RECORDS,
    BUILDKIT_SNAPSHOTS,
    LEASES,
    CONTAINERD_SNAPSHOTS,
    CTR_STORES,
    CTR_OBJECTS,
    CTR_LABELS,
    CTR_LEASE_RESOURCES,
    CTR_DIRS,
    RESIDUE,
    LAYER_SIGNATURES,
    HOLDERS,
    API_IMAGES,
    API_CONTAINERS,
    API_BUILD_CACHE,
    API_DF,
    ERRORS,
)

BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def markdown() -> str:
    """The README schema section: one table per snapshot table."""
    out = [f"Schema version **{SCHEMA_VERSION}.{SCHEMA_MINOR}**. Every table is `<name>.parquet` (zstd) in the "
           "snapshot dir. A table marked *since 1.N* is read as empty from snapshots written before revision N.\n"]
    for t in TABLES:
        since = f" *(since {SCHEMA_VERSION}.{t.since})*" if t.since > 1 else ""
        out.append(f"#### `{t.name}`{since}\n\n{t.description}\n\n| column | type | description |\n|---|---|---|")
        for name, typ, desc in t.columns:
            shown = "string" if pa.types.is_dictionary(typ) else str(typ)
            out.append(f"| `{name}` | {shown} | {desc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


# --- snapper watch: the recorder's own table (DIR/events/*.parquet), not part of a snapshot -----------------

WATCH_EVENTS = Table(
    "watch_events",
    "What `snapper watch` saw: the daemon's starts and losses (clean stop or death), the engine's event stream "
    "(GET /events) and the docker client commands in flight (from /proc). One row per observation.",
    (
        ("time_ns", _I64, "when it happened (engine events: the event's timeNano; daemon loss: when noticed)"),
        ("kind", _STR, "daemon-start | daemon-stop (pid file removed: clean) | daemon-death | engine-event | "
                       "client-start | client-end | recorder-start | recorder-stop"),
        ("pid", _I64, "dockerd pid (daemon rows) or the docker client's pid (client rows)"),
        ("daemon_started_ns", _I64, "start time of that dockerd (/proc/<pid>/stat)"),
        ("version", _STR, "dockerd version from GET /version (daemon-start)"),
        ("type", _STR, "engine event Type (image, container, builder, ...)"),
        ("action", _STR, "engine event Action (load, pull, delete, create, ...); client rows: the operation "
                         "(load, pull, import, build, commit, create, rmi, prune, builder-prune, export)"),
        ("subject", _STR, "the event's actor (image name or id, container id) or the client's image/file/tag; "
                          "never option values such as build args, env or secrets"),
        ("last_alive_ns", _I64, "daemon loss: the last time the daemon was seen alive (the loss is between this "
                                "and time_ns)"),
        ("in_flight", _LSTR, "daemon loss: the client operations running at that moment, as 'operation subject'"),
        ("detail", _STR, "free text: event attributes kept (name, image), reconnect reasons"),
    ),
    since=2,
)


# --- the fleet lake (snapper.lake): small per-snapshot tables, hive-partitioned by host and date ------------
# A lake file is <table>/host=<host>/date=<yyyy-mm-dd>/<snapshot>.parquet; host and date come from the path
# (LAKE_PARTITIONS), not from the file. The lake has its own major version, checked before any read or write.

LAKE_VERSION = 1
LAKE_PARTITIONS = pa.schema([pa.field("host", _STR), pa.field("date", _STR)])
_SNAP = ("snapshot", _STR, "snapshot id: the name of the snapshot dir")

LAKE_SNAPSHOTS = Table(
    "snapshots",
    "One row per pushed snapshot, written last: a snapshot is in the lake once this row is.",
    (
        _SNAP,
        ("started_ns", _I64, "collect start (ns since epoch)"),
        ("started_utc", _STR, "collect start, ISO 8601 UTC"),
        ("engine_version", _STR, "dockerd version from the engine API (null when the API was not asked)"),
        ("data_root", _STR, "the data root collected"),
        ("daemon_running", _BOOL, "a daemon served the data root during the collect"),
        ("daemon_started_utc", _STR, "when that daemon started (null when unknown)"),
        ("fs_used_bytes", _I64, "statvfs used bytes of the data root's filesystem"),
        ("fs_total_bytes", _I64, "statvfs total bytes"),
        ("tool_version", _STR, "snapper version that collected the snapshot"),
        ("schema", _STR, "snapshot schema version.minor"),
    ),
    since=2,
)

LAKE_LEAKS = Table(
    "leaks",
    "The snapshot's `leaks` query (default grace): leaked overlay2 dirs and containerd dirs, blobs, ingests.",
    (
        _SNAP,
        ("store", _STR, "overlay2, or the containerd store"),
        ("layer_id", _STR, "overlay2 dir, containerd snapshot id, blob digest or ingest dir"),
        ("bytes", _I64, "allocated bytes"),
        ("files", _I64, "entries"),
        ("mechanism", _STR, "how it leaked"),
        ("self_heals", _BOOL, "the engine frees it by itself"),
        ("created", _STR, "created, ISO 8601 UTC"),
        ("evidence", _STR, "why it is called leaked"),
        ("apparent_bytes", _I64, "apparent bytes"),
        ("name_class", _STR, "kind of dir"),
    ),
    since=2,
)

LAKE_RECONCILIATION = Table(
    "reconciliation",
    "The snapshot's `reconciliation` query: bytes and dirs per verdict and the other items of where the disk went.",
    (
        _SNAP,
        ("item", _STR, "filesystem used | overlay2 on disk | live | leaked | in-flight | unknown | ..."),
        ("bytes", _I64, "bytes"),
        ("dirs", _I64, "dirs (null for items that are not dirs)"),
    ),
    since=2,
)

LAKE_PREFIXES = Table(
    "prefixes",
    "The snapshot's `leak_prefixes` query (depth 4, default grace): its top 50 leaked content prefixes by bytes.",
    (
        _SNAP,
        ("prefix", _STR, "the first levels under diff/ of a leaked dir's files (`.` for files at its top)"),
        ("bytes", _I64, "allocated bytes under the prefix in leaked dirs"),
        ("files", _I64, "files under the prefix in leaked dirs"),
        ("dirs", _I64, "leaked dirs holding files under the prefix"),
    ),
    since=2,
)

LAKE_ERRORS = Table("errors", "The snapshot's errors table.",
                    (_SNAP, *ERRORS.columns), since=2)
LAKE_FILES = Table("files", "The snapshot's files table (only with `lake push --files`).",
                   (_SNAP, *FILES.columns), since=2)

LAKE_TABLES: tuple[Table, ...] = (LAKE_FILES, LAKE_LEAKS, LAKE_RECONCILIATION, LAKE_ERRORS, LAKE_PREFIXES,
                                  LAKE_SNAPSHOTS)
