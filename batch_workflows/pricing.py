"""Prices per model, the batch discount, the cost of results and a pre-submission estimate.

Prices are base (real-time) USD per million tokens, read from a CSV the user edits
(`batch_workflows/data/prices.csv` by default). The batch price is 50 % of the base price,
rounded UP to the cent, separately for input and output: base $0.13 in / $0.40 out gives
$0.07 / $0.20. All money is `Decimal`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batch_workflows.errors import ConfigurationError, InvalidInputError, Problem

if TYPE_CHECKING:
    from batch_workflows.results import ResultSet

DEFAULT_PRICE_FILE = Path(__file__).resolve().parent / "data" / "prices.csv"
COLUMNS = ("model", "input_usd_per_million", "output_usd_per_million")
# Output tokens assumed for a chat request that sets neither max_completion_tokens nor max_tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 256
CHARS_PER_TOKEN = 4
MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")

PathLike = str | os.PathLike[str]


def _decimal(value: Decimal | str | float | int) -> Decimal:
    # str() first: Decimal(0.13) would carry the float's binary error into the rounding.
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def batch_price(base: Decimal | str | float) -> Decimal:
    """Batch price from a base price: 50 %, rounded up to the cent (0.13 -> 0.07, 0.40 -> 0.20)."""
    value = _decimal(base)
    if value < 0:
        raise ValueError(f"a price cannot be negative: {base!r}")
    return (value / 2).quantize(CENT, rounding=ROUND_CEILING)


@dataclass(frozen=True)
class ModelPrice:
    """Base (real-time) USD per million input and output tokens of one model."""

    model: str
    input_per_million: Decimal
    output_per_million: Decimal

    @property
    def batch_input(self) -> Decimal:
        return batch_price(self.input_per_million)

    @property
    def batch_output(self) -> Decimal:
        return batch_price(self.output_per_million)

    def rates(self, batch: bool = True) -> tuple[Decimal, Decimal]:
        """(input, output) USD per million tokens at the batch or the base rate."""
        if batch:
            return self.batch_input, self.batch_output
        return self.input_per_million, self.output_per_million


class PriceTable:
    """Model -> `ModelPrice`, loaded from a CSV (`model,input_usd_per_million,output_usd_per_million`)."""

    def __init__(self, prices: Iterable[ModelPrice], source: str = "<prices>"):
        self.source = source
        self._prices: dict[str, ModelPrice] = {}
        for price in prices:
            self._prices[price.model] = price
        self._folded = {name.lower(): p for name, p in self._prices.items()}
        self._short = {_basename(name).lower(): p for name, p in self._prices.items()}

    @classmethod
    def load(cls, path: PathLike) -> PriceTable:
        """Read a price CSV; lines starting with `#` are comments. Bad rows raise
        ConfigurationError naming the file and line."""
        source = os.fspath(path)
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigurationError(f"cannot read price file {source}: {exc.strerror}") from None
        return cls(_parse_prices(text, source), source)

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped with the package (batch_workflows/data/prices.csv)."""
        return cls.load(DEFAULT_PRICE_FILE)

    @property
    def models(self) -> list[str]:
        return list(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.find(model) is not None

    def find(self, model: str) -> ModelPrice | None:
        """The price of `model`, or None. Matched exactly, then case-insensitively, then without
        an "org/" prefix, then without a date suffix (gpt-4o-mini-2024-07-18 -> gpt-4o-mini)."""
        for name in (model, _DATE_SUFFIX.sub("", model)):
            price = (
                self._prices.get(name)
                or self._folded.get(name.lower())
                or self._short.get(_basename(name).lower())
            )
            if price is not None:
                return price
        return None

    def get(self, model: str) -> ModelPrice:
        """The price of `model`; ConfigurationError naming the model and the price file if absent."""
        price = self.find(model)
        if price is None:
            raise ConfigurationError(
                f"no price for model {model!r} in {self.source}: add a row "
                f"`{model},<input USD per million>,<output USD per million>` to that file "
                "(or pass another with --prices)"
            )
        return price

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int, batch: bool = True
    ) -> Decimal:
        """USD for these tokens (exact, not rounded) at the batch rate, or the base rate."""
        rate_in, rate_out = self.get(model).rates(batch)
        return (prompt_tokens * rate_in + completion_tokens * rate_out) / MILLION


def _basename(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _parse_prices(text: str, source: str) -> Iterator[ModelPrice]:
    lines = [(no, line) for no, line in enumerate(text.splitlines(), 1)]
    rows = [(no, line) for no, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise ConfigurationError(f"price file {source} has no header line {','.join(COLUMNS)}")
    header_no, header = rows[0]
    names = [c.strip() for c in next(csv.reader(io.StringIO(header)))]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ConfigurationError(
            f"{source}:{header_no}: header must name the columns {', '.join(COLUMNS)} "
            f"(missing: {', '.join(missing)})"
        )
    where = {c: names.index(c) for c in COLUMNS}
    seen: dict[str, int] = {}
    for no, line in rows[1:]:
        values = [v.strip() for v in next(csv.reader(io.StringIO(line)))]
        if len(values) < len(names):
            raise ConfigurationError(f"{source}:{no}: expected {len(names)} values, got {len(values)}")
        model = values[where["model"]]
        if not model:
            raise ConfigurationError(f"{source}:{no}: model: empty")
        if model in seen:
            raise ConfigurationError(f"{source}:{no}: model {model!r} already priced on line {seen[model]}")
        seen[model] = no
        prices = []
        for column in COLUMNS[1:]:
            try:
                value = _decimal(values[where[column]])
            except ValueError:
                raise ConfigurationError(
                    f"{source}:{no}: {column}: not a number: {values[where[column]]!r}"
                ) from None
            if value < 0:
                raise ConfigurationError(f"{source}:{no}: {column}: negative price")
            prices.append(value)
        yield ModelPrice(model, prices[0], prices[1])


# ------------------------------------------------------------------ cost of results


@dataclass(frozen=True)
class ModelCost:
    """Tokens and USD of one model."""

    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    input_usd: Decimal
    output_usd: Decimal

    @property
    def usd(self) -> Decimal:
        return self.input_usd + self.output_usd


@dataclass(frozen=True)
class CostReport:
    """Cost per model and in total (exact Decimals; round only to display)."""

    models: list[ModelCost]
    batch: bool = True

    @property
    def prompt_tokens(self) -> int:
        return sum(m.prompt_tokens for m in self.models)

    @property
    def completion_tokens(self) -> int:
        return sum(m.completion_tokens for m in self.models)

    @property
    def usd(self) -> Decimal:
        return sum((m.usd for m in self.models), Decimal(0))


def _model_cost(table: PriceTable, model: str, usage: Mapping[str, int], batch: bool) -> ModelCost:
    rate_in, rate_out = table.get(model).rates(batch)
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return ModelCost(
        model=model,
        requests=int(usage.get("requests", 0)),
        prompt_tokens=prompt,
        completion_tokens=completion,
        input_usd=prompt * rate_in / MILLION,
        output_usd=completion * rate_out / MILLION,
    )


def cost_of_usage(
    usage_by_model: Mapping[str, Mapping[str, int]], table: PriceTable, batch: bool = True
) -> CostReport:
    """Cost of `{model: {"prompt_tokens", "completion_tokens", "requests"?}}`."""
    return CostReport([_model_cost(table, m, u, batch) for m, u in usage_by_model.items()], batch)


def cost_of_results(
    results: ResultSet | Iterable[ResultSet], table: PriceTable, batch: bool = True
) -> CostReport:
    """Cost of the tokens used by one or more result sets, per model (batch rate by default)."""
    from batch_workflows.results import ResultSet

    sets = [results] if isinstance(results, ResultSet) else list(results)
    merged: dict[str, dict[str, int]] = {}
    for rs in sets:
        for model, usage in rs.models.items():
            into = merged.setdefault(model, {})
            for key, value in usage.items():
                into[key] = into.get(key, 0) + int(value)
    return cost_of_usage(dict(sorted(merged.items())), table, batch)


# ------------------------------------------------------------------ pre-submission estimate


@dataclass(frozen=True)
class CostEstimate:
    """What a submission should cost before it is sent (approximate tokens, see estimate_cost)."""

    requests: int
    input_tokens: int
    output_tokens: int
    usd: Decimal
    models: dict[str, ModelCost] = field(default_factory=dict)


def estimate_cost(
    request_files: PathLike | Iterable[PathLike],
    table: PriceTable,
    batch: bool = True,
    default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
) -> CostEstimate:
    """Estimate the cost of submitting request files, streamed line by line.

    Approximations, stated: input tokens ≈ characters of the text / 4, rounded up per request
    (chat: message contents; embeddings and completions: `input`/`prompt`, where a list of
    token ids counts one token per id); output tokens for chat and completions = `n` ×
    `max_completion_tokens` or `max_tokens`, else `default_max_tokens` (an upper bound rather
    than a forecast); 0 for embeddings. A model missing from the table raises
    ConfigurationError naming it and the price file; an unreadable line raises
    InvalidInputError with the file and line.
    """
    paths = [request_files] if isinstance(request_files, str | os.PathLike) else request_files
    usage: dict[str, dict[str, int]] = {}
    requests = 0
    for path in paths:
        for no, body in _bodies(os.fspath(path)):
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise InvalidInputError([Problem(os.fspath(path), no, "body.model", "missing")])
            prompt, completion = estimate_tokens(body, default_max_tokens)
            u = usage.setdefault(model, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
            u["requests"] += 1
            u["prompt_tokens"] += prompt
            u["completion_tokens"] += completion
            requests += 1
    report = cost_of_usage(usage, table, batch)
    return CostEstimate(
        requests=requests,
        input_tokens=report.prompt_tokens,
        output_tokens=report.completion_tokens,
        usd=report.usd,
        models={m.model: m for m in report.models},
    )


def estimate_input_tokens(path: PathLike) -> int:
    """Input tokens of every request in one request file, estimated as `estimate_cost` does:
    what a batch holds of a provider's enqueued-token quota (OpenAI counts input tokens)."""
    return sum(estimate_tokens(body)[0] for _, body in _bodies(os.fspath(path)))


def _bodies(path: str) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if no == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InvalidInputError([Problem(path, no, None, f"not valid JSON: {exc}")]) from None
            body = obj.get("body") if isinstance(obj, dict) else None
            if not isinstance(body, dict):
                raise InvalidInputError([Problem(path, no, "body", "missing or not an object")])
            yield no, body


def estimate_tokens(
    body: Mapping[str, Any], default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
) -> tuple[int, int]:
    """(input, output) tokens of one request body, approximately (see estimate_cost).

    The one estimate: the pre-submission cost and the upstream backend's tokens-per-minute
    pacing both use it."""
    if "messages" in body:
        chars = tokens = 0
        for message in body.get("messages") or ():
            if isinstance(message, dict):
                c, t = _text_size(message.get("content"))
                chars, tokens = chars + c, tokens + t
        prompt = tokens + math.ceil(chars / CHARS_PER_TOKEN)
        return prompt, _output_tokens(body, default_max_tokens)
    if "input" in body:  # embeddings: no output tokens
        chars, tokens = _text_size(body.get("input"))
        return tokens + math.ceil(chars / CHARS_PER_TOKEN), 0
    chars, tokens = _text_size(body.get("prompt"))  # legacy completions
    return tokens + math.ceil(chars / CHARS_PER_TOKEN), _output_tokens(body, default_max_tokens)


def _text_size(value: Any) -> tuple[int, int]:
    """(characters of text, token ids) in a content/input value of any accepted shape."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 0, 1  # one token id
    if isinstance(value, list):
        chars = tokens = 0
        for item in value:
            if isinstance(item, dict):  # content part: {"type": "text", "text": ...}
                item = item.get("text")
            c, t = _text_size(item)
            chars, tokens = chars + c, tokens + t
        return chars, tokens
    return 0, 0


def _output_tokens(body: Mapping[str, Any], default_max_tokens: int) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    choices = body.get("n") or 1
    # Unvalidated bodies reach here (cost of any file, real-time calls): odd values fall back.
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = default_max_tokens
    if not isinstance(choices, int) or isinstance(choices, bool):
        choices = 1
    return limit * choices
