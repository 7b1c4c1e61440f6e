-- The schema, migration history and rows the release b1aee53 (before the
-- conversation model) wrote on PostgreSQL: the sessions of README.md,
-- saved by its DataFlowBackend (genfixture/main.go built in `git archive
-- b1aee53`), dumped with
--   pg_dump --schema=tk_fixture_v1 --no-owner --no-privileges --inserts --no-comments
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
    version bigint NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY turnkeep_migrations ALTER COLUMN id SET DEFAULT nextval('turnkeep_migrations_id_seq'::regclass);

INSERT INTO turnkeep_messages VALUES ('session-1', 1, 0, 'v1-s1-t1', 'user', 'question 1 of session 1?', '{"nested":{"ok":false},"session":1,"tags":["v1","1"],"turn":1}', '2026-11-01 09:16:41+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 1, 1, 'v1-s1-t1', 'assistant', 'answer 1 of session 1: lorem ipsum dolor ', NULL, '2026-11-01 09:16:41+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 2, 0, 'v1-s1-t2', 'user', 'question 2 of session 1?', '{"nested":{"ok":true},"session":1,"tags":["v1","2"],"turn":2}', '2026-11-01 09:16:42+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 2, 1, 'v1-s1-t2', 'assistant', 'answer 2 of session 1: lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:16:42+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 3, 0, 'v1-s1-t3', 'user', 'question 3 of session 1?', NULL, '2026-11-01 09:16:43+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 3, 1, 'v1-s1-t3', 'assistant', 'answer 3 of session 1: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:16:43+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 4, 0, 'v1-s1-t4', 'user', 'question 4 of session 1?', '{"nested":{"ok":true},"session":1,"tags":["v1","4"],"turn":4}', '2026-11-01 09:16:44+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 4, 1, 'v1-s1-t4', 'assistant', 'answer 4 of session 1: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:16:44+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 5, 0, 'v1-s1-t5', 'user', 'question 5 of session 1?', '{"nested":{"ok":false},"session":1,"tags":["v1","5"],"turn":5}', '2026-11-01 09:16:45+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 5, 1, 'v1-s1-t5', 'assistant', 'answer 5 of session 1: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:16:45+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 6, 0, 'v1-s1-t6', 'user', 'question 6 of session 1?', NULL, '2026-11-01 09:16:46+00');
INSERT INTO turnkeep_messages VALUES ('session-1', 6, 1, 'v1-s1-t6', 'assistant', 'answer 6 of session 1: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:16:46+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 1, 0, 'v1-s2-t1', 'user', 'question 1 of session 2?', '{"nested":{"ok":false},"session":2,"tags":["v1","1"],"turn":1}', '2026-11-01 09:33:21+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 1, 1, 'v1-s2-t1', 'assistant', 'answer 1 of session 2: lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:33:21+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 2, 0, 'v1-s2-t2', 'user', 'question 2 of session 2?', '{"nested":{"ok":true},"session":2,"tags":["v1","2"],"turn":2}', '2026-11-01 09:33:22+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 2, 1, 'v1-s2-t2', 'assistant', 'answer 2 of session 2: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:33:22+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 3, 0, 'v1-s2-t3', 'user', 'question 3 of session 2?', NULL, '2026-11-01 09:33:23+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 3, 1, 'v1-s2-t3', 'assistant', 'answer 3 of session 2: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:33:23+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 4, 0, 'v1-s2-t4', 'user', '日本語の質問です 🙂', '{"nested":{"ok":true},"session":2,"tags":["v1","4"],"turn":4}', '2026-11-01 09:33:24+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 4, 1, 'v1-s2-t4', 'assistant', 'Ответ по-русски, with code: func main() { fmt.Println(42) }', NULL, '2026-11-01 09:33:24+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 5, 0, 'v1-s2-t5', 'user', 'question 5 of session 2?', '{"nested":{"ok":false},"session":2,"tags":["v1","5"],"turn":5}', '2026-11-01 09:33:25+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 5, 1, 'v1-s2-t5', 'assistant', 'answer 5 of session 2: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:33:25+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 6, 0, 'v1-s2-t6', 'user', 'question 6 of session 2?', NULL, '2026-11-01 09:33:26+00');
INSERT INTO turnkeep_messages VALUES ('session-2', 6, 1, 'v1-s2-t6', 'assistant', 'answer 6 of session 2: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:33:26+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 1, 0, 'v1-s3-t1', 'user', 'question 1 of session 3?', '{"nested":{"ok":false},"session":3,"tags":["v1","1"],"turn":1}', '2026-11-01 09:50:01+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 1, 1, 'v1-s3-t1', 'assistant', 'answer 1 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:01+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 2, 0, 'v1-s3-t2', 'user', 'question 2 of session 3?', '{"nested":{"ok":true},"session":3,"tags":["v1","2"],"turn":2}', '2026-11-01 09:50:02+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 2, 1, 'v1-s3-t2', 'assistant', 'answer 2 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:02+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 3, 0, 'v1-s3-t3', 'user', 'question 3 of session 3?', NULL, '2026-11-01 09:50:03+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 3, 1, 'v1-s3-t3', 'assistant', 'answer 3 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:03+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 4, 0, 'v1-s3-t4', 'user', 'question 4 of session 3?', '{"nested":{"ok":true},"session":3,"tags":["v1","4"],"turn":4}', '2026-11-01 09:50:04+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 4, 1, 'v1-s3-t4', 'assistant', 'answer 4 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:04+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 5, 0, 'v1-s3-t5', 'user', 'question 5 of session 3?', '{"nested":{"ok":false},"session":3,"tags":["v1","5"],"turn":5}', '2026-11-01 09:50:05+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 5, 1, 'v1-s3-t5', 'assistant', 'answer 5 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:05+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 6, 0, 'v1-s3-t6', 'user', 'question 6 of session 3?', NULL, '2026-11-01 09:50:06+00');
INSERT INTO turnkeep_messages VALUES ('session-3', 6, 1, 'v1-s3-t6', 'assistant', 'answer 6 of session 3: lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor lorem ipsum dolor ', NULL, '2026-11-01 09:50:06+00');
INSERT INTO turnkeep_messages VALUES ('session-4', 1, 0, 'v1-s4-t1', 'user', 'a question saved before its answer', NULL, '2026-11-01 10:06:41+00');
INSERT INTO turnkeep_messages VALUES ('session-4', 1, 1, 'v1-s4-t1', 'assistant', '', NULL, '2026-11-01 10:06:41+00');
INSERT INTO turnkeep_messages VALUES ('session-4', 2, 0, 'v1-s4-t2', 'user', '', NULL, '2026-11-01 10:06:42+00');
INSERT INTO turnkeep_messages VALUES ('session-4', 2, 1, 'v1-s4-t2', 'assistant', 'an answer with no question', NULL, '2026-11-01 10:06:42+00');

INSERT INTO turnkeep_migrations VALUES (1, 'turnkeep_sessions', 'b48ceb7996e11d69dc728432104d68368049251f87ef5592da8cb680620e2daa', 'CREATE TABLE IF NOT EXISTS "turnkeep_sessions" ("id" varchar(255) NOT NULL, "turn_count" BIGINT NOT NULL, "version" BIGINT NOT NULL, "created_at" TIMESTAMPTZ NOT NULL, "updated_at" TIMESTAMPTZ NOT NULL, PRIMARY KEY ("id"))', '2026-12-01 02:37:49.932469+00', 1);
INSERT INTO turnkeep_migrations VALUES (2, 'turnkeep_messages', '7d6730fc5bad12437596fce75ce399b159081ae3172b2dcd45bcda7217dc8861', 'CREATE TABLE IF NOT EXISTS "turnkeep_messages" ("session_id" varchar(255) NOT NULL, "seq" BIGINT NOT NULL, "pos" INTEGER NOT NULL, "turn_id" varchar(128) NOT NULL, "role" varchar(32) NOT NULL, "content" text NOT NULL, "metadata" text, "created_at" TIMESTAMPTZ NOT NULL, PRIMARY KEY ("session_id", "seq", "pos"));
CREATE UNIQUE INDEX IF NOT EXISTS "turnkeep_messages_turn_idx" ON "turnkeep_messages" ("session_id", "turn_id", "pos")', '2026-12-01 02:37:49.954781+00', 15);

INSERT INTO turnkeep_sessions VALUES ('session-1', 6, 3165863635702022086, '2026-12-01 02:37:49.974932+00', '2026-12-01 02:37:50.000846+00');
INSERT INTO turnkeep_sessions VALUES ('session-2', 6, 991709514430508169, '2026-12-01 02:37:50.003312+00', '2026-12-01 02:37:50.016868+00');
INSERT INTO turnkeep_sessions VALUES ('session-3', 6, 1627240733327880379, '2026-12-01 02:37:50.02087+00', '2026-12-01 02:37:50.031884+00');
INSERT INTO turnkeep_sessions VALUES ('session-4', 2, 3594423760099196473, '2026-12-01 02:37:50.033031+00', '2026-12-01 02:37:50.034644+00');

SELECT pg_catalog.setval('turnkeep_migrations_id_seq', 2, true);

ALTER TABLE ONLY turnkeep_messages
    ADD CONSTRAINT turnkeep_messages_pkey PRIMARY KEY (session_id, seq, pos);

ALTER TABLE ONLY turnkeep_migrations
    ADD CONSTRAINT turnkeep_migrations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY turnkeep_sessions
    ADD CONSTRAINT turnkeep_sessions_pkey PRIMARY KEY (id);

CREATE UNIQUE INDEX turnkeep_messages_turn_idx ON turnkeep_messages USING btree (session_id, turn_id, pos);

CREATE INDEX turnkeep_migrations_table_idx ON turnkeep_migrations USING btree (table_name, id);

