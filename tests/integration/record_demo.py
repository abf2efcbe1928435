"""Record the demo snapshot shipped in snapper/demo/sample from a REAL private dockerd with REAL leaks.

    cd tests && python3 -m integration.record_demo ../snapper/demo/sample

What it does, in one daemon: healthy objects (bb:base, a legacy build with intermediate images, a BuildKit
build, exited and created containers), then four genuine leaks: a BuildKit duplicate layer (9.4), an
interrupted `docker rmi` (9.1, SIGKILL), an interrupted `docker load` (9.2, SIGKILL) and an orphan
container mount (9.3, post-state made by removing the container record while the daemon is down). The
daemon is left as the last crash left it (a clean stop would let the -removing chain self-heal) and the
snapshot is collected offline, as a forensic collect after a crash would be.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from snapper.collect import CollectOptions, collect

from .engine import Engine, import_busybox
from .images import make_image_tar
from .test_leak_mechanisms import _context, kill_when, layerdb


def record(dest: Path) -> Path:
    eng = Engine()
    work = Path(tempfile.mkdtemp(prefix="snp-demo-"))
    try:
        eng.start()
        import_busybox(eng)
        ctx = _context(work / "legacy", "FROM bb:base\nRUN mkdir -p /app && echo 'print(1)' > /app/main.py\n"
                       "ENV APP=1\nRUN dd if=/dev/zero of=/app/model.bin bs=1k count=512 2>/dev/null\n")
        eng.build(ctx, "app:legacy", buildkit=False)
        ctx = _context(work / "bk", "FROM bb:base\nCOPY req.txt /req.txt\nRUN echo built > /built\n",
                       {"req.txt": "numpy==2.0\n"})
        eng.build(ctx, "app:bk", buildkit=True)
        eng.docker("run", "--network", "none", "--name", "finished-job", "app:legacy", "true")
        eng.docker("create", "--network", "none", "--name", "created-only", "bb:base")
        # 9.4: identical rebuild with --no-cache, then images and build cache pruned
        dup = _context(work / "dup", "FROM bb:base\nCOPY site.txt /site.txt\n", {"site.txt": "same\n"})
        eng.build(dup, "dup:1", buildkit=True)
        eng.build(dup, "dup:2", buildkit=True, extra=["--no-cache"])
        eng.docker("rmi", "dup:1", "dup:2")
        eng.docker("builder", "prune", "-af")
        # 9.3: a container whose record vanished (post-state of the docker export leak of 24.0-27.5)
        orphan = eng.docker("create", "--network", "none", "--name", "orphan", "app:legacy").stdout.strip()
        # 9.1: SIGKILL during docker rmi of a 3-layer image
        tar1 = work / "ml1.tar"
        make_image_tar(tar1, "ml-base:2024-09", [6000, 6000, 6000], "ml")
        eng.docker("load", "-i", str(tar1))
        sha = layerdb(eng) / "sha256"
        kill_when(eng, ["rmi", "ml-base:2024-09"], lambda: any(n.endswith("-removing") for n in os.listdir(sha)))
        shutil.rmtree(eng.root / "containers" / orphan)
        eng.start()
        # 9.2: SIGKILL during docker load (the first layer is the same as ml-base's: re-adopted)
        tar2 = work / "ml2.tar"
        make_image_tar(tar2, "ml-train:2024-10", [20000, 20000], "ml2")
        before = set(os.listdir(eng.root / "overlay2"))
        tmp = layerdb(eng) / "tmp"

        seen: list[float] = []

        def extracting() -> bool:  # let the extraction run 1.5 s once the write-set and dir exist
            if not seen and tmp.exists() and any(n.startswith("write-set-") for n in os.listdir(tmp)) and \
                    len(set(os.listdir(eng.root / "overlay2")) - before) >= 1:
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] > 1.5

        kill_when(eng, ["load", "-i", str(tar2)], extracting)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        res = collect(CollectOptions(root=str(eng.root), out=str(dest), api=False, jobs=2))
        return res.path
    finally:
        eng.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(record(Path(sys.argv[1]).resolve()))
