"""Parquet and Feather / Arrow IPC files, through pyarrow (imported for such files only), and
an Arrow table's columns as the table model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrwatch.sources.tables._table import Column, Table, not_a_table, quote


def read_parquet(path: Path, table: Table) -> dict[str, Column]:
    from lrwatch.errors import require

    pq = require("pyarrow.parquet", "pyarrow")
    import pyarrow as pa

    try:
        arrow_table = pq.read_table(path)
        arrow_table.column_names  # noqa: B018 - damaged metadata fails here (UnicodeDecodeError)
    except (pa.ArrowException, OSError, ValueError):  # ArrowInvalid is a ValueError
        raise not_a_table(path) from None
    return arrow_columns(arrow_table, table)


def arrow_ipc_table(path: Path):
    """The table of a Feather / Arrow IPC file, or of an Arrow IPC stream (no magic, no footer:
    what ``pyarrow.ipc.new_stream`` and polars' ``write_ipc_stream`` write).

    Raises:
        InputError: neither.
    """
    import warnings

    from lrwatch.errors import require

    feather = require("pyarrow.feather", "pyarrow")
    import pyarrow as pa

    # Damaged metadata fails only when the names are read (UnicodeDecodeError, a ValueError
    # like ArrowInvalid), so they are read here.
    try:
        with warnings.catch_warnings():
            # Feather V1 still reads, with a DeprecationWarning that is no news to the reader.
            warnings.simplefilter("ignore", DeprecationWarning)
            arrow_table = feather.read_table(path)
        arrow_table.column_names  # noqa: B018
        return arrow_table
    except (pa.ArrowException, OSError, ValueError):
        pass
    try:
        with pa.ipc.open_stream(path) as reader:
            arrow_table = reader.read_all()
        arrow_table.column_names  # noqa: B018
        return arrow_table
    except (pa.ArrowException, OSError, ValueError):
        raise not_a_table(path) from None


def arrow_ipc_column_names(path: Path) -> list[str]:
    """A Feather / Arrow IPC file's or stream's column names, from its schema alone (a Feather
    V1 file, which has no IPC schema, is read whole).

    Raises:
        InputError: not such a file.
    """
    import pyarrow as pa

    for open_schema in (pa.ipc.open_file, pa.ipc.open_stream):
        try:
            with open_schema(path) as reader:
                return list(reader.schema.names)
        except (pa.ArrowException, OSError, ValueError):  # UnicodeDecodeError: a ValueError
            continue
    return list(arrow_ipc_table(path).column_names)


def arrow_columns(arrow_table, table: Table) -> dict[str, Column]:
    import pyarrow as pa

    columns = {}
    for index, name in enumerate(arrow_table.column_names):
        chunked = arrow_table.column(index)  # by position: a header may repeat a name
        kind = chunked.type
        if not name.strip():
            continue
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        ):
            cells = chunked.drop_null()
            if len(cells):  # a column blank in every row (type null) is no column at all
                table.add_text(name.strip(), quote(cells[0].as_py()), chunked.to_pylist)
            continue
        present = ~np.asarray(chunked.is_null(), dtype=bool)
        # safe=False: an integer beyond 2**53 (a time.time_ns() column) becomes the nearest
        # float, as a CSV's digits do, where a safe cast refused the whole file.
        values = chunked.cast(pa.float64(), safe=False).fill_null(np.nan)
        values = np.asarray(values, dtype=np.float64)
        columns[name.strip()] = (values, present)
    return columns


def parquet_column_names(path: Path) -> list[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return []  # read_table says what is wrong
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError, ValueError):  # ArrowInvalid is a ValueError
        return []
