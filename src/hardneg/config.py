"""Run configuration: one YAML file, validated by pydantic, stored with every run's results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .compute_config import ComputeConfig
from .eval_config import EvalConfig
from .first_stage_config import EmbedderConfig, FusionWeightsConfig
from .rundir import slug
from .train_config import AddedKeysOmitted, TrainConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Fusion = Literal["zscore", "minmax", "rrf", "mean", "concat-pca", "union"]


class MiningConfig(_Strict):
    """How negatives are chosen from a ranked candidate pool.

    Rules apply in this order, each counting what it removed: labelled positives (and copies), cluster scope,
    rank window, likely positives, positive-aware filter, absolute margin, score floor / ceiling, geometric rule,
    then sampling, with the cross-encoder denoising pass vetoing picks as they are made.
    """

    num_negatives: int = Field(4, ge=1, description="negatives per (query, positive) pair")
    depth: int = Field(100, ge=1, description="top-k per ensemble member forming the candidate pool")
    positive_ratio: float | None = Field(
        0.95, gt=0, description="NV-Retriever's positive-aware filter: drop a candidate whose score is at least "
        "this fraction of the positive's (per member, on its raw similarity scale, averaged); null disables")
    # The default window, sampled at random, is the measured default (docs/RESULTS.md, "Mining"): it keeps the very
    # top, where unlabelled positives sit, out of the negatives, and works for every strategy kind.
    range_min: int = Field(5, ge=0, description="skip the first range_min candidates (by fused rank); 0, with "
                           "range_max null and sampling top, restores the paper's top-n")
    range_max: int | None = Field(50, ge=1, description="ignore candidates ranked at or below this; null: none")
    sampling: Literal["top", "random"] = Field("random", description="take the best of the window, or sample it")
    random_share: float = Field(0.0, ge=0, le=1, description="share of each pair's negatives drawn at random")
    fill_shortfall: Literal["random", "none"] = Field(
        "random", description="pairs with too few hard candidates: top up with random negatives, or leave short")
    # Fields below were added after the first release. At their default they are left out of the mining
    # fingerprint (see stamp()), so runs mined before they existed are reused, not mined and trained again.
    fusion: Fusion | None = Field(
        None, description="this strategy's fusion, overriding the run's: zscore, minmax, rrf, mean (weighted mean "
        "of normalised scores), concat-pca (dense members' vectors concatenated, PCA-reduced) or union (each member "
        "contributes its own top picks in turn)")
    kept_variance: float = Field(0.95, gt=0, le=1, description="share of variance the concat-pca representation "
                                 "keeps (also the space clustering works in)")
    absolute_margin: float | None = Field(
        None, description="drop a candidate whose fused score is above the positive's minus this margin (on the "
        "fused scale: z-units for zscore); null disables")
    score_floor: float | None = Field(None, description="drop candidates whose fused score is below this")
    score_ceiling: float | None = Field(None, description="drop candidates whose fused score is above this")
    geometric: bool = Field(
        False, description="keep only candidates D with d(Q,D) < d(Q,P) and d(Q,D) < d(P,D) (cosine distance, "
        "weighted mean over dense members); needs a dense member")
    likely_positive_ratio: float | None = Field(
        None, gt=0, description="set aside candidates that every member scores at least this fraction of the "
        "positive's score (1.0: at or above the positive) as likely positives, written to likely_positives.jsonl; "
        "null disables")
    add_likely_positives: bool = Field(False, description="also train on likely positives as extra positives")
    cluster: Literal["kmeans", "agglomerative", "gmm"] | None = Field(
        None, description="cluster the corpus in the fused dense space and draw negatives by cluster; null: no")
    clusters: int | None = Field(None, ge=2, description="number of clusters; null: chosen by cluster_rule")
    cluster_rule: Literal["sqrt", "silhouette"] = Field(
        "sqrt", description="how the number of clusters is chosen: sqrt(documents), or the best silhouette of "
        "k-means on a sample among sqrt(N)/2, sqrt(N), 2*sqrt(N)")
    cluster_scope: Literal["query", "positive", "stratified"] = Field(
        "query", description="negatives from the query's cluster, the positive's cluster, or round-robin across "
        "the cluster_near clusters nearest the query (stratified replaces union fusion's per-member turns)")
    cluster_near: int = Field(3, ge=1, description="clusters used by cluster_scope: stratified")
    denoise_model: str | None = Field(
        None, description="cross-encoder (folder or name) that re-scores picks; a pick it scores above the "
        "positive minus denoise_margin is dropped as a likely positive; null disables")
    denoise_margin: float = Field(0.0, description="denoise: logit margin below the positive's score")
    denoise_max_length: int | None = Field(
        None, ge=16, description="denoise: token limit of each (query, document) pair; null: the model's own "
        "(often 512, several times slower than a training length of 128)")

    @model_validator(mode="after")
    def _window(self) -> MiningConfig:
        if self.range_max is not None and self.range_max <= self.range_min:
            raise ValueError(f"range_max ({self.range_max}) must be greater than range_min ({self.range_min}); "
                             "the defaults are 5 and 50, set both (range_max null: no upper bound)")
        if self.score_floor is not None and self.score_ceiling is not None and self.score_floor >= self.score_ceiling:
            raise ValueError(f"score_floor ({self.score_floor}) must be below score_ceiling ({self.score_ceiling})")
        if self.add_likely_positives and self.likely_positive_ratio is None and self.denoise_model is None:
            raise ValueError("add_likely_positives needs likely_positive_ratio or denoise_model to find any")
        return self

    def stamp(self) -> dict:
        """The settings as fingerprinted: later-added fields only when they differ from their default."""
        dump = self.model_dump()
        later = list(MiningConfig.model_fields)[list(MiningConfig.model_fields).index("fusion"):]
        return {k: v for k, v in dump.items() if k not in later or v != MiningConfig.model_fields[k].default}


class StrategyConfig(_Strict):
    """One kind of negatives to train a re-ranker on.

    ``kind``: ``random``, ``bm25``, ``dense`` (one model: ``models: [minilm]``) or ``ensemble``. Shorthand
    strings in YAML: ``random``, ``bm25``, ``dense:minilm``, ``ensemble``.
    """

    name: str = Field(..., description="the strategy's name: its folder under strategies/ and its row in the tables")
    kind: Literal["random", "bm25", "dense", "ensemble"] = Field(
        ..., description="where candidates come from: random documents, BM25, one dense model, or the ensemble")
    models: list[str] | None = Field(
        None, description="dense: the one model; ensemble: its members (default: the run's ensemble)")
    mining: dict = Field(default_factory=dict, description="overrides of the run's mining settings, e.g. "
                         "{range_min: 0, range_max: null, sampling: top}")

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value):
        if isinstance(value, str):
            kind, _, model = value.partition(":")
            if kind == "dense":
                if not model:
                    raise ValueError("'dense' needs a model: dense:<model>, e.g. dense:minilm")
                return {"name": value, "kind": "dense", "models": [model]}
            if model:
                raise ValueError(f"strategy {value!r}: only 'dense' takes a ':<model>' suffix; for an ensemble of "
                                 "other models write {name: ..., kind: ensemble, models: [...]}")
            return {"name": value, "kind": kind}
        return value

    @model_validator(mode="after")
    def _check(self) -> StrategyConfig:
        if self.kind == "dense" and (not self.models or len(self.models) != 1):
            raise ValueError(f"strategy {self.name!r}: kind 'dense' needs exactly one model")
        MiningConfig(**self.mining)  # reject unknown or invalid overrides now, not hours into a run
        return self


class SearchConfig(_Strict):
    """Candidate search over dense embeddings (FAISS); queries go in blocks so memory stays bounded."""

    index: Literal["auto", "flat", "ivf"] = Field(
        "auto", description="exact inner product (flat) up to flat_max_docs documents, IVF beyond; or force one")
    flat_max_docs: int = Field(200_000, ge=1, description="largest corpus 'auto' searches exactly")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF lists (default about 2 x sqrt of the corpus size)")
    ivf_nprobe: int = Field(16, ge=1, description="IVF lists visited per query: higher is slower, more exact")
    query_block: int = Field(4096, ge=1, description="queries searched at a time (bounds memory)")


class ChunkConfig(_Strict):
    """Long documents: mine, train and re-rank on chunks, then score documents from their chunks."""

    strategy: Literal["none", "tokens", "sentences", "semantic"] = Field(
        "none", description="none (documents truncated at train.max_length), tokens (windows of max_tokens with "
        "overlap), sentences (whole sentences packed up to max_tokens) or semantic (packed, cut where adjacent "
        "sentences' embeddings diverge)")
    max_tokens: int = Field(96, ge=16, description="chunk size in re-ranker tokens, title included; leave room "
                            "for the query within train.max_length")
    overlap: int = Field(16, ge=0, description="tokens shared by consecutive chunks (tokens, sentences)")
    positive: Literal["all", "best"] = Field(
        "all", description="which chunks of a positive document are training positives: all, or the one the "
        "ensemble scores highest for the query (the others are never used as negatives)")
    aggregation: Literal["maxp", "firstp", "sump"] = Field(
        "maxp", description="a document's re-ranker score from its chunks: best, first, or sum")
    semantic_model: str = Field("minilm", description="embedder for the semantic strategy's sentence vectors")
    semantic_quantile: float = Field(0.25, gt=0, lt=1, description="semantic: cut at adjacent-sentence "
                                     "similarities in this lowest share of the document's")
    long_threshold: int | None = Field(None, ge=1, description="documents longer than this many tokens are 'long' "
                                       "in the short/long evaluation; default train.max_length")

    @model_validator(mode="after")
    def _overlap(self) -> ChunkConfig:
        if self.overlap >= self.max_tokens:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than max_tokens ({self.max_tokens})")
        return self


DEFAULT_ENSEMBLE = ["minilm", "wordllama", "bm25"]
# Chosen on SciFact *train* queries, never test (docs/RESULTS.md, "First stage"): WordLlama at half weight adds its
# recall without diluting the fused ranking.
DEFAULT_WEIGHTS = [1.0, 0.5, 1.0]


class RunConfig(_Strict):
    """Everything one ``hardneg run`` does; stored in the run folder as config.json."""

    dataset: str = Field(..., description="a BEIR name under the data directory, or a dataset folder")
    data_dir: str | None = Field(None, description="folder holding datasets named by BEIR name; default "
                                 "$HARDNEG_DATA, else ./data")
    output: str = Field("runs/run", description="run folder: every stage's output, reused when its settings "
                        "are unchanged")
    cache_dir: str | None = Field(None, description="embedding cache folder; default .cache/embeddings beside the "
                                  "run folder, shared by sibling runs")
    seed: int = Field(42, description="seeds the dev split, query sampling, mining's random draws and training")
    train_split: str = Field("train", description="qrels split whose (query, positive) pairs are mined and "
                             "trained on")
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="train queries held out for dev (interpolation)")
    max_train_queries: int | None = Field(None, ge=1, description="seeded subset of training queries")
    ensemble: list[str] = Field(default_factory=lambda: list(DEFAULT_ENSEMBLE),
                                description="first-stage members (model names, or bm25) fused into one ranking")
    fusion: Fusion = Field("zscore", description="how ensemble members are fused (see mining.fusion)")
    weights: list[float] | None = Field(None, description="fusion weight per ensemble member; null: equal, or "
                                        "[1, 0.5, 1] for the default ensemble (minilm, wordllama, bm25)")
    embed_max_seq_length: int | None = Field(None, ge=8, description="token limit of the dense members; default "
                                             "each model's own")
    embed_workers: int = Field(1, ge=1, description="processes embedding batches in parallel (each gets its share "
                               "of the CPU threads)")
    embed_dtype: Literal["float16", "float32"] = Field(
        "float16", description="in-memory precision of document vectors (the on-disk cache is float16)")
    search: SearchConfig = Field(default_factory=SearchConfig, description="dense candidate search")
    mining: MiningConfig = Field(default_factory=MiningConfig, description="how negatives are chosen (every "
                                 "strategy; a strategy's own mining overrides win)")
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig.model_validate(s)
                                 for s in ("random", "bm25", "dense:minilm", "ensemble")],
        description="negative strategies, one re-ranker each; shorthand strings or mappings")
    train: TrainConfig = Field(default_factory=TrainConfig, description="re-ranker training")
    evaluate: EvalConfig = Field(default_factory=EvalConfig, description="evaluation")
    rounds: int = Field(1, ge=1, le=2, description="2: mine, train, re-mine with the trained re-ranker as "
                        "mining.denoise_model, train again (the second model is the one evaluated)")
    chunking: ChunkConfig = Field(default_factory=ChunkConfig, description="long documents")
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig, description="fine-tuning the dense members")
    fusion_weights: FusionWeightsConfig = Field(default_factory=FusionWeightsConfig,
                                                description="ensemble weights and fusion learned per collection")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="device, precision and engine")
    progress: bool = Field(True, description="show progress bars")

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        # Sections added after the first release are left out at their default, so a config that does not use
        # them dumps (and fingerprints) as before and its finished stages are reused.
        dump = handler(self)
        for name in ("embedder", "fusion_weights", "compute"):
            if name in dump and getattr(self, name) == type(getattr(self, name))():
                del dump[name]
        return dump

    @model_validator(mode="after")
    def _weights(self) -> RunConfig:
        if self.weights is None and self.ensemble == DEFAULT_ENSEMBLE:
            self.weights = list(DEFAULT_WEIGHTS)
        if self.weights is not None and len(self.weights) != len(self.ensemble):
            raise ValueError(f"weights has {len(self.weights)} values for {len(self.ensemble)} ensemble members")
        if self.weights is not None and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError(f"weights must be non-negative with a positive sum, got {self.weights}")
        return self

    @model_validator(mode="after")
    def _splits(self) -> RunConfig:
        if self.train_split == self.evaluate.split:
            raise ValueError(f"train_split and evaluate.split are both {self.train_split!r}: training on the "
                             "queries you evaluate on inflates every score. Use separate qrels splits.")
        return self

    @model_validator(mode="after")
    def _rerank_subset(self) -> RunConfig:
        extra = set(self.evaluate.rerank or []) - set(self.evaluate.first_stages)
        if extra:
            raise ValueError(f"evaluate.rerank names {sorted(extra)}, which are not in evaluate.first_stages")
        return self

    @model_validator(mode="after")
    def _cross_fit_names(self) -> RunConfig:
        unknown = set(self.evaluate.cross_fit_strategies or []) - {s.name for s in self.strategies}
        if unknown:
            raise ValueError(f"evaluate.cross_fit_strategies names {sorted(unknown)}, which are not strategies of "
                             f"this run ({[s.name for s in self.strategies]})")
        return self

    def cross_fitted(self) -> list[StrategyConfig]:
        """The strategies whose re-rankers are cross-fitted when the run cross-fits (evaluate.cross_fit)."""
        names = self.evaluate.cross_fit_strategies
        if names is None:
            named = [s for s in self.strategies if s.name == "ensemble"]
            return named or list(self.strategies)
        return [s for s in self.strategies if s.name in names]

    @field_validator("strategies")
    @classmethod
    def _unique_names(cls, value: list[StrategyConfig]) -> list[StrategyConfig]:
        names = [s.name for s in value]
        slugs = [slug(n) for n in names]
        dupes = {n for n, sl in zip(names, slugs) if slugs.count(sl) > 1}
        if dupes:
            raise ValueError(f"strategy names must be unique as folder names; clashing: {sorted(dupes)}")
        if "base" in names:
            raise ValueError("'base' is reserved for the untuned re-ranker")
        return value

    def mining_for(self, strategy: StrategyConfig) -> MiningConfig:
        return MiningConfig(**{**self.mining.model_dump(), **strategy.mining})

    def members_for(self, strategy: StrategyConfig) -> list[str]:
        if strategy.kind == "ensemble":
            return strategy.models or self.ensemble
        if strategy.kind == "bm25":
            return ["bm25"]
        return list(strategy.models or [])


def fingerprint(*parts) -> str:
    """A short stable hash of settings, used to tell whether a finished stage's output can be reused."""
    blob = json.dumps([p.model_dump() if isinstance(p, BaseModel) else p for p in parts], sort_keys=True,
                      default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read a YAML config; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level.")
    return config_from_dict(raw, overrides, source=str(path))


def config_from_dict(raw: dict, overrides: dict | None = None, source: str = "settings") -> RunConfig:
    """A RunConfig from nested settings plus dotted overrides (``train.epochs``); errors name ``source``."""
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):  # e.g. seed.x: seed is a number, not a section
                raise ValueError(f"{source}: cannot set {dotted!r}: {key!r} is a value, not a section of settings.")
        node[leaf] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{source}: invalid config: {problems}") from None
