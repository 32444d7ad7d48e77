-- The town's databases on PostgreSQL (docker-compose.postgres.yml): one per service, each owned
-- by a role named as the service, which is its certificate's common name, as PostgreSQL's `cert`
-- authentication matches it (pg_hba.conf). No role has a password: the services log in with
-- their certificates from the town's CA, over TLS.
CREATE ROLE bank LOGIN;
CREATE DATABASE bank OWNER bank;
CREATE ROLE chat LOGIN;
CREATE DATABASE chat OWNER chat;
CREATE ROLE doctor LOGIN;
CREATE DATABASE doctor OWNER doctor;
CREATE ROLE phonebook LOGIN;
CREATE DATABASE phonebook OWNER phonebook;
