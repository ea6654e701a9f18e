-- The events table on a ClickHouse cluster: a ReplicatedMergeTree per shard (events_local)
-- and a Distributed table over it (events) for queries.
--
-- Run once, as an administrator, against any node (ON CLUSTER runs it on every node):
--
--   clickhouse-client --multiquery < deploy/clickhouse/cluster/events.sql
--
-- Needs: a cluster named in <remote_servers> with <internal_replication>true</internal_replication>
-- and the macros {cluster}, {shard}, {replica} on every node (cluster/config.d/cluster.xml is
-- an example), ClickHouse Keeper (or ZooKeeper), ClickHouse 22.2+ for insert deduplication
-- tokens (the test suite's reference is 25.8).
--
-- sluice writes to sluice.events_local (SLUICE_CLICKHOUSE__TABLE=events_local), each instance
-- to the replicas of one shard: a replicated table deduplicates a retried insert by its
-- insert_deduplication_token on every replica, which is what makes sluice's retries
-- exactly-once. Queries, dashboards and analysts read sluice.events (Distributed).
-- docs/scaling.md explains the choice; in short, sluice sends its token only to tables it
-- knows deduplicate (Replicated*MergeTree, or MergeTree with a non-zero
-- non_replicated_deduplication_window), and a Distributed table is neither.
--
-- The column list is exactly what `sluice db init` creates on a modern server
-- (`sluice db init --print-ddl --server-version 25.8`); tests/deploy_clickhouse.rs keeps the
-- two equal. `sluice db init` run afterwards against a node (with table = events_local) finds
-- the table, adds nothing, and records its migrations in that node's
-- sluice.schema_migrations.

CREATE DATABASE IF NOT EXISTS sluice ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS sluice.events_local ON CLUSTER '{cluster}'
(
    `event_id` UUID,
    `message_id` Nullable(String),
    `app_id` LowCardinality(String),
    `app_version` LowCardinality(Nullable(String)),
    `platform` LowCardinality(Nullable(String)),
    `source` LowCardinality(Nullable(String)),
    `stream` LowCardinality(Nullable(String)),
    `collector_tstamp` DateTime64(3, 'UTC'),
    `dvce_created_tstamp` Nullable(DateTime64(3, 'UTC')),
    `dvce_sent_tstamp` Nullable(DateTime64(3, 'UTC')),
    `true_tstamp` Nullable(DateTime64(3, 'UTC')),
    `derived_tstamp` Nullable(DateTime64(3, 'UTC')),
    `event` LowCardinality(String),
    `event_vendor` LowCardinality(Nullable(String)),
    `event_name` LowCardinality(Nullable(String)),
    `event_format` LowCardinality(Nullable(String)),
    `event_version` LowCardinality(Nullable(String)),
    `event_fingerprint` Nullable(String),
    `name_tracker` LowCardinality(Nullable(String)),
    `v_tracker` LowCardinality(Nullable(String)),
    `v_collector` LowCardinality(String),
    `v_etl` LowCardinality(Nullable(String)),
    `user_id` Nullable(String),
    `anonymous_id` Nullable(String),
    `user_ipaddress` Nullable(String),
    `user_fingerprint` Nullable(String),
    `domain_userid` Nullable(String),
    `domain_sessionidx` Nullable(Int64),
    `domain_sessionid` Nullable(String),
    `network_userid` Nullable(String),
    `page_url` Nullable(String),
    `page_title` Nullable(String),
    `page_referrer` Nullable(String),
    `page_urlscheme` LowCardinality(Nullable(String)),
    `page_urlhost` Nullable(String),
    `page_urlport` Nullable(Int64),
    `page_urlpath` Nullable(String),
    `page_urlquery` Nullable(String),
    `page_urlfragment` Nullable(String),
    `refr_urlscheme` LowCardinality(Nullable(String)),
    `refr_urlhost` Nullable(String),
    `refr_urlport` Nullable(Int64),
    `refr_urlpath` Nullable(String),
    `refr_urlquery` Nullable(String),
    `refr_urlfragment` Nullable(String),
    `mkt_medium` Nullable(String),
    `mkt_source` Nullable(String),
    `mkt_term` Nullable(String),
    `mkt_content` Nullable(String),
    `mkt_campaign` Nullable(String),
    `mkt_clickid` Nullable(String),
    `mkt_network` LowCardinality(Nullable(String)),
    `contexts` Nullable(String),
    `unstruct_event` Nullable(String),
    `properties` Nullable(String),
    `traits` Nullable(String),
    `context` Nullable(String),
    `se_category` Nullable(String),
    `se_action` Nullable(String),
    `se_label` Nullable(String),
    `se_property` Nullable(String),
    `se_value` Nullable(Float64),
    `tr_orderid` Nullable(String),
    `tr_affiliation` Nullable(String),
    `tr_total` Nullable(Float64),
    `tr_tax` Nullable(Float64),
    `tr_shipping` Nullable(Float64),
    `tr_city` Nullable(String),
    `tr_state` Nullable(String),
    `tr_country` Nullable(String),
    `tr_currency` LowCardinality(Nullable(String)),
    `ti_orderid` Nullable(String),
    `ti_sku` Nullable(String),
    `ti_name` Nullable(String),
    `ti_category` Nullable(String),
    `ti_price` Nullable(Float64),
    `ti_quantity` Nullable(Int64),
    `ti_currency` LowCardinality(Nullable(String)),
    `pp_xoffset_min` Nullable(Int64),
    `pp_xoffset_max` Nullable(Int64),
    `pp_yoffset_min` Nullable(Int64),
    `pp_yoffset_max` Nullable(Int64),
    `useragent` Nullable(String),
    `br_name` LowCardinality(Nullable(String)),
    `br_family` LowCardinality(Nullable(String)),
    `br_version` LowCardinality(Nullable(String)),
    `br_lang` LowCardinality(Nullable(String)),
    `br_cookies` Nullable(UInt8),
    `br_colordepth` LowCardinality(Nullable(String)),
    `br_viewwidth` Nullable(Int64),
    `br_viewheight` Nullable(Int64),
    `os_name` LowCardinality(Nullable(String)),
    `os_family` LowCardinality(Nullable(String)),
    `os_timezone` LowCardinality(Nullable(String)),
    `dvce_type` LowCardinality(Nullable(String)),
    `dvce_ismobile` Nullable(UInt8),
    `dvce_screenwidth` Nullable(Int64),
    `dvce_screenheight` Nullable(Int64),
    `doc_charset` LowCardinality(Nullable(String)),
    `doc_width` Nullable(Int64),
    `doc_height` Nullable(Int64),
    `wal_partition` Nullable(UInt64),
    `wal_lsn` Nullable(UInt64),
    `wal_index` Nullable(UInt64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/sluice/events_local', '{replica}')
PARTITION BY toYYYYMM(collector_tstamp)
ORDER BY (app_id, event, toDate(collector_tstamp), event_id)
-- The deduplication window: how many recent insert blocks (about one per sluice batch) and for
-- how long their tokens are remembered, shared by EVERY writer of the shard. A re-sent batch
-- is dropped only while its first attempt is still inside both. Size the count for
-- (inserts per second of all sluice instances on this shard) x (longest time an instance may
-- be down before it re-sends): docs/scaling.md, "The deduplication window".
SETTINGS index_granularity = 8192,
         replicated_deduplication_window = 10000,
         replicated_deduplication_window_seconds = 604800;

-- Sharding key: a deterministic function of the row, so a re-sent batch splits across shards
-- exactly as the first attempt did (never rand()). event_id is deterministic for every event
-- sluice writes (the tracker's id, or one derived from the event's log position).
CREATE TABLE IF NOT EXISTS sluice.events ON CLUSTER '{cluster}' AS sluice.events_local
ENGINE = Distributed('{cluster}', sluice, events_local, cityHash64(event_id));
