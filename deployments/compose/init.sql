-- Run once by the postgres image (docker-entrypoint-initdb.d) in database
-- "shop": the capture role, a sample table, the watermarks table and the
-- publication, as the setup guide of the capture specification describes
-- for a self-hosted PostgreSQL (wal_level=logical is set on the command line).

CREATE ROLE flow_capture WITH LOGIN REPLICATION PASSWORD 'secret';

CREATE TABLE public.orders (
	id        bigserial PRIMARY KEY,
	customer  text NOT NULL,
	amount    numeric(10,2) NOT NULL,
	status    text NOT NULL DEFAULT 'new',
	placed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.orders (customer, amount, status) VALUES
	('Ada Lovelace', 42.00, 'paid'),
	('Grace Hopper', 17.50, 'new');

-- Read access for backfills, also to the tables created later.
GRANT USAGE ON SCHEMA public TO flow_capture;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO flow_capture;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO flow_capture;
-- Lets pgkafka create its own publication and watermarks table when they
-- are missing (it adds tables to a publication only when it owns them).
GRANT CREATE ON DATABASE shop TO flow_capture;
GRANT CREATE ON SCHEMA public TO flow_capture;

CREATE TABLE IF NOT EXISTS public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
GRANT ALL PRIVILEGES ON TABLE public.flow_watermarks TO flow_capture;

CREATE PUBLICATION flow_publication;
ALTER PUBLICATION flow_publication SET (publish_via_partition_root = true);
ALTER PUBLICATION flow_publication ADD TABLE public.flow_watermarks, public.orders;
