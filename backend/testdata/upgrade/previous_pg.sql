-- The schema, migration history and rows the previous release (git HEAD
-- af8f09f) wrote on PostgreSQL: 3 sessions x 5 turns, saved by its
-- DataFlowBackend (cmd run from `git archive HEAD`), dumped with
--   pg_dump --schema=tk_fixture_prev --no-owner --no-privileges --inserts --no-comments
-- then made schema-neutral: psql meta-commands, SET lines, CREATE SCHEMA
-- and the schema qualifier removed. Run it with search_path set to an
-- empty schema.

CREATE TABLE turnkeep_messages (
    session_id character varying(255) NOT NULL,
    seq bigint NOT NULL,
    pos integer NOT NULL,
    turn_id character varying(128) NOT NULL,
    role character varying(32) NOT NULL,
    content text NOT NULL,
    metadata text,
    created_at timestamp with time zone NOT NULL
);

CREATE TABLE turnkeep_migrations (
    id bigint NOT NULL,
    table_name character varying(255) NOT NULL,
    checksum character varying(64) NOT NULL,
    statements text NOT NULL,
    applied_at timestamp with time zone NOT NULL,
    duration_ms bigint NOT NULL
);

CREATE SEQUENCE turnkeep_migrations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE turnkeep_migrations_id_seq OWNED BY turnkeep_migrations.id;

CREATE TABLE turnkeep_sessions (
    id character varying(255) NOT NULL,
    turn_count bigint NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY turnkeep_migrations ALTER COLUMN id SET DEFAULT nextval('turnkeep_migrations_id_seq'::regclass);

INSERT INTO turnkeep_messages VALUES ('session-1', 1, 0, 's1-t1', 'user', 'question 1 of session 1', '{"session":1,"tags":["a","1"],"turn":1}', '2026-10-01 12:01:41+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 1, 1, 's1-t1', 'assistant', 'answer 1 of session 1', NULL, '2026-10-01 12:01:41+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 2, 0, 's1-t2', 'user', 'question 2 of session 1', '{"session":1,"tags":["a","2"],"turn":2}', '2026-10-01 12:01:42+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 2, 1, 's1-t2', 'assistant', 'answer 2 of session 1', NULL, '2026-10-01 12:01:42+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 3, 0, 's1-t3', 'user', 'question 3 of session 1', NULL, '2026-10-01 12:01:43+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 3, 1, 's1-t3', 'assistant', 'answer 3 of session 1', NULL, '2026-10-01 12:01:43+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 4, 0, 's1-t4', 'user', 'question 4 of session 1', '{"session":1,"tags":["a","4"],"turn":4}', '2026-10-01 12:01:44+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 4, 1, 's1-t4', 'assistant', 'answer 4 of session 1', NULL, '2026-10-01 12:01:44+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 5, 0, 's1-t5', 'user', 'question 5 of session 1', '{"session":1,"tags":["a","5"],"turn":5}', '2026-10-01 12:01:45+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 5, 1, 's1-t5', 'assistant', 'answer 5 of session 1', NULL, '2026-10-01 12:01:45+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 1, 0, 's2-t1', 'user', 'question 1 of session 2', '{"session":2,"tags":["a","1"],"turn":1}', '2026-10-01 12:03:21+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 1, 1, 's2-t1', 'assistant', 'answer 1 of session 2', NULL, '2026-10-01 12:03:21+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 2, 0, 's2-t2', 'user', 'question 2 of session 2', '{"session":2,"tags":["a","2"],"turn":2}', '2026-10-01 12:03:22+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 2, 1, 's2-t2', 'assistant', 'answer 2 of session 2', NULL, '2026-10-01 12:03:22+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 3, 0, 's2-t3', 'user', 'question 3 of session 2', NULL, '2026-10-01 12:03:23+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 3, 1, 's2-t3', 'assistant', 'answer 3 of session 2', NULL, '2026-10-01 12:03:23+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 4, 0, 's2-t4', 'user', 'question 4 of session 2', '{"session":2,"tags":["a","4"],"turn":4}', '2026-10-01 12:03:24+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 4, 1, 's2-t4', 'assistant', 'answer 4 of session 2', NULL, '2026-10-01 12:03:24+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 5, 0, 's2-t5', 'user', 'question 5 of session 2', '{"session":2,"tags":["a","5"],"turn":5}', '2026-10-01 12:03:25+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 5, 1, 's2-t5', 'assistant', 'answer 5 of session 2', NULL, '2026-10-01 12:03:25+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 1, 0, 's3-t1', 'user', 'question 1 of session 3', '{"session":3,"tags":["a","1"],"turn":1}', '2026-10-01 12:05:01+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 1, 1, 's3-t1', 'assistant', 'answer 1 of session 3', NULL, '2026-10-01 12:05:01+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 2, 0, 's3-t2', 'user', 'question 2 of session 3', '{"session":3,"tags":["a","2"],"turn":2}', '2026-10-01 12:05:02+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 2, 1, 's3-t2', 'assistant', 'answer 2 of session 3', NULL, '2026-10-01 12:05:02+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 3, 0, 's3-t3', 'user', 'question 3 of session 3', NULL, '2026-10-01 12:05:03+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 3, 1, 's3-t3', 'assistant', 'answer 3 of session 3', NULL, '2026-10-01 12:05:03+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 4, 0, 's3-t4', 'user', 'question 4 of session 3', '{"session":3,"tags":["a","4"],"turn":4}', '2026-10-01 12:05:04+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 4, 1, 's3-t4', 'assistant', 'answer 4 of session 3', NULL, '2026-10-01 12:05:04+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 5, 0, 's3-t5', 'user', 'question 5 of session 3', '{"session":3,"tags":["a","5"],"turn":5}', '2026-10-01 12:05:05+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 5, 1, 's3-t5', 'assistant', 'answer 5 of session 3', NULL, '2026-10-01 12:05:05+00');

INSERT INTO turnkeep_migrations VALUES (1, 'turnkeep_sessions', '9af48e647e73bde5a0bacaa26acb42d5c6444b6ed22300de91a99c6d3ef17852', 'CREATE TABLE IF NOT EXISTS "turnkeep_sessions" ("id" varchar(255) NOT NULL, "turn_count" BIGINT NOT NULL, "created_at" TIMESTAMPTZ NOT NULL, "updated_at" TIMESTAMPTZ NOT NULL, PRIMARY KEY ("id"))', '2026-12-01 00:28:38.378192+00', 2);
INSERT INTO turnkeep_migrations VALUES (2, 'turnkeep_messages', '7d6730fc5bad12437596fce75ce399b159081ae3172b2dcd45bcda7217dc8861', 'CREATE TABLE IF NOT EXISTS "turnkeep_messages" ("session_id" varchar(255) NOT NULL, "seq" BIGINT NOT NULL, "pos" INTEGER NOT NULL, "turn_id" varchar(128) NOT NULL, "role" varchar(32) NOT NULL, "content" text NOT NULL, "metadata" text, "created_at" TIMESTAMPTZ NOT NULL, PRIMARY KEY ("session_id", "seq", "pos"));
CREATE UNIQUE INDEX IF NOT EXISTS "turnkeep_messages_turn_idx" ON "turnkeep_messages" ("session_id", "turn_id", "pos")', '2026-12-01 00:28:38.387789+00', 3);

INSERT INTO turnkeep_sessions VALUES ('session-1', 5, '2026-12-01 00:28:38.351788+00', '2026-12-01 00:28:38.393875+00');
INSERT INTO turnkeep_sessions VALUES ('session-2', 5, '2026-12-01 00:28:38.394464+00', '2026-12-01 00:28:38.397212+00');
INSERT INTO turnkeep_sessions VALUES ('session-3', 5, '2026-12-01 00:28:38.397808+00', '2026-12-01 00:28:38.40048+00');

SELECT pg_catalog.setval('turnkeep_migrations_id_seq', 2, true);

ALTER TABLE ONLY turnkeep_messages
    ADD CONSTRAINT turnkeep_messages_pkey PRIMARY KEY (session_id, seq, pos);

ALTER TABLE ONLY turnkeep_migrations
    ADD CONSTRAINT turnkeep_migrations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY turnkeep_sessions
    ADD CONSTRAINT turnkeep_sessions_pkey PRIMARY KEY (id);

CREATE UNIQUE INDEX turnkeep_messages_turn_idx ON turnkeep_messages USING btree (session_id, turn_id, pos);

CREATE INDEX turnkeep_migrations_table_idx ON turnkeep_migrations USING btree (table_name, id);

