"""The one settings model. Built once by an entrypoint; components get only their part."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from limits import parse as parse_rate
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from registry.domain.errors import InvalidError, RegistryError
from registry.domain.names import parse_s3_url
from registry.domain.tokens import check_credential
from registry.domain.urls import check_http_url
from registry.domain.xet.xorb import MAX_XORB_BYTES


class _Section(BaseModel):
    """A settings sub-model: a misspelt key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class LimitSettings(_Section):
    """Abuse limits. Sizes: 0 turns a limit off (not the header limit). Rates: "<count>/<window>"
    in the `limits` package's notation ("1800/minute", "10 per 2 seconds"), counted in fixed
    windows by each process on its own; "" turns a rate limit off."""

    max_header_bytes: PositiveInt = 64 * 1024  # all request headers together
    max_json_bytes: NonNegativeInt = 1024 * 1024
    # A body that may be an image: a PNG sent for the ComfyUI workflow it embeds.
    max_image_bytes: NonNegativeInt = 64 * 1024 * 1024
    max_commit_bytes: NonNegativeInt = 256 * 1024 * 1024
    max_commit_operations: NonNegativeInt = 100_000  # files added or deleted by one commit
    max_blob_bytes: NonNegativeInt = 50 * 1024**3  # one uploaded file (the Hub's own limit)
    # One Xet xorb or shard upload; the protocol's own cap is 64 MiB of chunks plus their
    # headers (clients fill xorbs to it).
    max_xet_body_bytes: NonNegativeInt = MAX_XORB_BYTES
    max_page_size: PositiveInt = 1000
    # Free space kept on the data dir's disk for the database and the change log: a blob
    # upload that would leave less is refused at once (507), before any byte is written.
    disk_reserve: ByteSize = ByteSize(1024**3)
    # Memory for the large pieces of downloads and uploads in flight, node process-wide; past
    # it, transfers go on with small pieces (slower) instead of growing memory per connection.
    transfer_buffer_bytes: PositiveInt = 256 * 1024 * 1024
    writes_per_token: str | None = "1800/minute"  # POST, PUT, PATCH, DELETE
    writes_per_address: str | None = "3600/minute"
    reads_per_token: str | None = "3600/minute"  # search, listings, trees, the change feed
    reads_per_address: str | None = "7200/minute"
    exempt_users: list[str] = []  # users never rate limited (the admin never is either)

    @field_validator(
        "writes_per_token", "writes_per_address", "reads_per_token", "reads_per_address"
    )
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        try:
            positive = parse_rate(value).amount > 0
        except ValueError:
            positive = False
        if not positive:
            raise ValueError(
                f"{value!r} is not a rate: write '<count>/<window>', e.g. '600/minute' "
                "or '10 per 2 seconds' (\"\" for no limit)"
            )
        return value


class PeerConfig(_Section):
    url: str
    token: SecretStr | None = None  # shown as ********** in settings errors and reprs
    blobs: Literal["eager", "lazy"] = "eager"
    # How a new peer is joined (as `modelyard peer add --bootstrap`): from its snapshot, by
    # replaying its log from serial 0, or `auto` (snapshot past `sync.snapshot_threshold`).
    bootstrap: Literal["snapshot", "replay", "auto"] = "auto"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            return check_http_url(value, "A peer's url")
        except RegistryError as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from None

    @field_validator("token")
    @classmethod
    def _credential(cls, value: SecretStr | None) -> SecretStr | None:
        try:
            check_credential(value.get_secret_value() if value else None, "A peer's token")
        except RegistryError as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from None
        return value


class SyncSettings(_Section):
    peers: list[PeerConfig] = []  # added to the peer table at start (also: /v1/peers)
    long_poll: float = 20.0  # seconds a feed request may wait for news
    probe_interval: float = 2.0  # seconds between health probes of each peer
    batch: int = 500  # entries a feed page asks for when following live
    # ... and while more than `batch` behind (catching up): one transaction applies each page,
    # so fewer, larger ones; the feed also bounds a page by bytes
    catchup_batch: int = Field(default=5000, ge=1, le=5000)
    # Concurrent background blob fetches (eager catch-up); default: one per core, 2 to 8.
    blob_workers: int | None = Field(default=None, ge=1, le=64)
    backfill_interval: float = 10.0  # seconds between sweeps for blobs still missing
    degraded_after: int = 2  # consecutive failures
    down_after: int = 5
    up_after: int = 3  # consecutive successes for a down peer to be up again
    # `peer add --bootstrap auto`: a peer whose head serial is above this starts from its
    # snapshot (registry.service.snapshot); one at or below it is replayed from serial 0.
    snapshot_threshold: int = 10_000

    @field_validator("peers")
    @classmethod
    def _unique(cls, peers: list[PeerConfig]) -> list[PeerConfig]:
        urls = [p.url.rstrip("/") for p in peers]
        if len(urls) != len(set(urls)):
            raise ValueError("peers must be unique")
        return peers


class ScanSettings(_Section):
    enabled: bool = True  # off: files stay "pending" (shown, never hidden)
    interval: float = 2.0  # seconds between scanner passes


class HashSettings(_Section):
    enabled: bool = True  # off: safetensors files have no AutoV3/AutoV1 (looked up without)
    interval: float = 2.0  # seconds between passes of the safetensors hash job when idle
    batch: PositiveInt = 20  # blobs hashed per pass, at most


class ImageSettings(_Section):
    enabled: bool = True  # off: images stay pending (no generation data, no "made with" links)
    interval: float = 2.0  # seconds between passes of the image metadata job when idle
    batch: PositiveInt = 20  # images read per pass, at most


class IndexSettings(_Section):
    enabled: bool = True  # off: search reads every repo directly (found, just slower)
    interval: float = 0.5  # seconds between indexer passes when idle
    batch: int = 500  # change-log entries indexed per transaction


class MirrorSettings(_Section):
    enabled: bool = True  # off: changes wait in the outbox (kept, pushed when turned on)
    interval: float = 1.0  # seconds between outbox passes when idle
    retry_initial: float = 1.0  # seconds before the first retry of a failed push (doubles)
    retry_max: float = 300.0


class GcSettings(_Section):
    # Seconds an unreferenced blob, or an upload's leftover, is kept after an upload last
    # stored or relied on it: longer than any client takes from its upload to its commit.
    grace: float = Field(default=24 * 3600, ge=0)


class ScrubSettings(_Section):
    """Reading stored blobs back (`modelyard verify`, and passes inside `modelyard serve`)."""

    enabled: bool = True  # passes in `serve` (one process of the node runs them at a time)
    rate: ByteSize = ByteSize(32 * 1024 * 1024)  # bytes read per second ("64MiB"; 0: no limit)
    # Seconds from the end of one pass to the start of the next (a new node: from its start).
    interval: float = Field(default=7 * 24 * 3600.0, gt=0)


class XetSettings(_Section):
    """The Xet protocol (the Hub client's default for large files; see docs/architecture.md)."""

    # Off: the token routes refuse, and the stock client's error names HF_HUB_DISABLE_XET=1.
    enabled: bool = True
    token_seconds: float = Field(default=3600.0, ge=120)  # lifetime of a CAS access token
    # How long a client may dedup against a chunk list the node sent it (the answer's
    # expiry); gc keeps a xorb no file uses any more for this long.
    dedup_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)


class Settings(BaseSettings):
    """Every flag of `modelyard serve` is also `MODELYARD_<NAME>` and a key in the TOML file."""

    # Errors never quote values: they may be tokens or a database URL with its password.
    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./modelyard-data")
    node_id: str | None = None
    public_url: str | None = None
    admin_token: SecretStr | None = None
    # Seals the peer and mirror tokens this node stores (any string of 32+ characters, such as
    # `openssl rand -hex 32`); every process of a node needs the same one. Without it they are
    # stored as given.
    credentials_key: SecretStr | None = None
    # Follow a peer's or mirror's redirect into another kind of non-public address (a public
    # node into loopback or a private network, a loopback node to a private network).
    allow_private_redirects: bool = False
    token: SecretStr | None = None  # MODELYARD_TOKEN: a user's token for client commands
    database_url: str | None = None
    # Seconds a write waits for another's lock on an embedded (SQLite) database before it is
    # answered 503 DatabaseUnavailable.
    database_busy_timeout: float = Field(default=30.0, gt=0)
    blob_store: str | None = None  # MODELYARD_BLOB_STORE=s3://bucket/prefix; default: data_dir
    # The blob store's own S3 endpoint (default: boto3's chain, AWS_ENDPOINT_URL included), so
    # a node's blobs and its S3 mirrors may live on different S3-compatible services.
    blob_store_endpoint: str | None = None
    # Seconds an S3 blob store request may take to connect or to send its next bytes, per
    # attempt (botocore makes up to 3): past them it is retried, then answered 503.
    blob_store_timeout: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    limits: LimitSettings = LimitSettings()
    sync: SyncSettings = SyncSettings()
    scan: ScanSettings = ScanSettings()
    hashes: HashSettings = HashSettings()
    images: ImageSettings = ImageSettings()
    index: IndexSettings = IndexSettings()
    mirror: MirrorSettings = MirrorSettings()
    gc: GcSettings = GcSettings()
    scrub: ScrubSettings = ScrubSettings()
    xet: XetSettings = XetSettings()
    # Seconds between writes of download counts (a write only when there were downloads): a
    # download shows in model_info within about this long.
    downloads_flush_interval: float = 0.5
    # Seconds a node-wide background job stays with a process that stopped renewing its lease
    # (one that died); then another process of the node takes the job over.
    lease_seconds: float = 10.0
    # Seconds a process trusts what it read of a token: one revoked by another process sharing
    # the database stops working here within this. Also how often tokens' last use is written
    # (a listing may show it that late).
    token_recheck_interval: float = Field(default=10.0, gt=0)

    @field_validator("blob_store")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_s3_url(value)
            except InvalidError as exc:
                raise ValueError(f"blob_store is an S3 URL: s3://bucket/prefix ({exc})") from None
        return value

    @field_validator("credentials_key")
    @classmethod
    def _long_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("credentials_key needs 32 characters or more (openssl rand -hex 32)")
        return value

    @model_validator(mode="after")
    def _endpoint_needs_store(self) -> Settings:
        if self.blob_store_endpoint and not self.blob_store:
            raise ValueError("blob_store_endpoint is the endpoint of an S3 blob_store: set both")
        return self

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'modelyard.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "store"


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Settings from flags (highest), then `MODELYARD_*` variables, then the TOML file."""

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used
            file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            if config_file is None:
                return init_settings, env_settings
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file)

    given = {key: value for key, value in overrides.items() if value is not None}
    return _Layered(**given)  # type: ignore[arg-type]  # pydantic validates each value
