"""A KV cache whose rows can leave and join a running batch, in buffers with spare columns.

transformers' DynamicLayer concatenates every step (each layer's keys and values are copied
into tensors one column longer), which costs a copy of the whole cache per step and leaves the
allocator a trail of freed blocks each slightly too small for the next: the heap grows to about
twice the cache. A SlabLayer writes into a buffer with CHUNK spare columns and reallocates only
when they run out. The batch operations the decoding loop needs (keep some rows, cut leading
columns that only padding uses, merge two batches, copy a shared prompt prefix into new rows)
are here too.
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer

CHUNK = 64  # spare columns per reallocation


class SlabLayer(DynamicLayer):
    """One layer's keys and values: `keys`/`values` are views of the first `length` columns."""

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        super().lazy_initialization(key_states, value_states)
        self.length = 0
        self._k = key_states.new_zeros((*key_states.shape[:2], 0, key_states.shape[-1]))
        self._v = value_states.new_zeros((*value_states.shape[:2], 0, value_states.shape[-1]))

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self.length + n > self._k.shape[-2]:
            self._set(self._k[:, :, : self.length], self._v[:, :, : self.length],
                      self.length + n + CHUNK)
        self._k[:, :, self.length : self.length + n] = key_states
        self._v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def _set(self, keys: Any, values: Any, capacity: int) -> None:
        """New buffers holding keys/values, `capacity` columns wide."""
        shape = (keys.shape[0], keys.shape[1], capacity, keys.shape[-1])
        self._k, self._v = keys.new_empty(shape), values.new_empty(shape)
        self.length = keys.shape[-2]
        self._k[:, :, : self.length], self._v[:, :, : self.length] = keys, values
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def keep_rows(self, index: Any) -> None:
        self._k, self._v = self._k[index], self._v[index]
        self._views()

    def absorb(self, other: SlabLayer) -> None:
        """Append other's rows, the shorter left-padded with zeros to the longer."""
        width = max(self.length, other.length)
        rows = self.keys.shape[0]
        shape = (rows + other.keys.shape[0], self.keys.shape[1], width + CHUNK,
                 self.keys.shape[-1])
        # Zeros, not empty: padding columns are masked, but 0 x NaN garbage would still be NaN.
        k, v = self.keys.new_zeros(shape), self.values.new_zeros(shape)
        k[:rows, :, width - self.length : width] = self.keys
        v[:rows, :, width - self.length : width] = self.values
        k[rows:, :, width - other.length : width] = other.keys
        v[rows:, :, width - other.length : width] = other.values
        self._k, self._v, self.length = k, v, width
        self._views()

    def cut_left(self, columns: int) -> None:
        """Drop the first columns (a view: the memory goes at the next reallocation)."""
        self._k, self._v = self._k[:, :, columns:], self._v[:, :, columns:]
        self.length -= columns
        self._views()


def new_cache() -> Any:
    """An empty cache that makes SlabLayers as the model fills it."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = SlabLayer
    return cache


def row_columns(cache: Any, row: int, start: int, length: int) -> list[tuple[Any, Any]]:
    """Each layer's keys and values of one row's columns start ... start + length (views)."""
    end = start + length
    return [(layer.keys[row : row + 1, :, start:end], layer.values[row : row + 1, :, start:end])
            for layer in cache.layers]


def repeat_rows(columns: list[tuple[Any, Any]], rows: int, spare: int) -> Any:
    """A new cache of `rows` copies of one row's columns (each layer's keys and values: a prompt
    prefix they share), each with room for `spare` more columns."""
    out = new_cache()
    for keys, values in columns:
        slab = SlabLayer()
        slab.lazy_initialization(keys, values)
        slab._set(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1),
                  keys.shape[-2] + spare)
        out.layers.append(slab)
    return out


def reshapable(cache: Any) -> bool:
    """Whether this cache is made of SlabLayers (a model may build its own kind)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        isinstance(layer, SlabLayer) and layer.is_initialized for layer in layers
    )


def keep_rows(cache: Any, index: Any) -> None:
    for layer in cache.layers:
        layer.keep_rows(index)


def cut_left(cache: Any, columns: int) -> None:
    for layer in cache.layers:
        layer.cut_left(columns)


def merge(a: Any, b: Any) -> None:
    """Append b's rows to a's (b is not to be used afterwards)."""
    for la, lb in zip(a.layers, b.layers, strict=True):
        la.absorb(lb)
