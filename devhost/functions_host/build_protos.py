"""Generate the FunctionRpc Python modules from ``proto/`` into ``generated/`` with grpcio-tools.

protoc writes absolute imports (``from shared import NullableTypes_pb2``), which would resolve to the
relay's own ``shared`` package; they are rewritten to relative imports inside the generated package,
as the Python worker's own build does.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE / "proto"
OUT_DIR = HERE / "generated"

_ABSOLUTE_IMPORT = re.compile(r"^from (identity|shared) import ", re.MULTILINE)
_TOP_LEVEL_IMPORT = re.compile(r"^import (\w+_pb2) as ", re.MULTILINE)


def relative_imports(source: str, depth: int) -> str:
    """Rewrite protoc's imports for a module ``depth`` packages below the generated package's root."""
    up = "." * (depth + 1)
    source = _ABSOLUTE_IMPORT.sub(rf"from {up}\1 import ", source)
    return _TOP_LEVEL_IMPORT.sub(rf"from {up} import \1 as ", source)


def generate(proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[Path]:
    protos = sorted(path.relative_to(proto_dir).as_posix() for path in proto_dir.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto shipped with grpcio-tools
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {', '.join(protos)}")
        staged = Path(tmp)
        for package in [staged, *(p for p in staged.rglob("*") if p.is_dir())]:
            (package / "__init__.py").touch()
        written = []
        for module in staged.rglob("*_pb2*.py"):
            depth = len(module.relative_to(staged).parts) - 1
            module.write_text(relative_imports(module.read_text(encoding="utf-8"), depth), encoding="utf-8")
            written.append(out_dir / module.relative_to(staged))
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.copytree(staged, out_dir)
    return sorted(written)


def main() -> None:
    written = generate()
    print(f"generated {len(written)} FunctionRpc modules in {OUT_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
