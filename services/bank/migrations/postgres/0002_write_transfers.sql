-- Writes a batch of transfers in one call (and, outside a transaction block, one round trip with
-- its commit), for batches decided from a read made without locks: first it locks the accounts
-- the decisions read, in id order, and checks that none changed since (`seen_*`: each one's
-- balance and fences as read), and that the sessions the decisions found live still are
-- (`live_sessions`, each once; locked FOR SHARE, so a logout waits for the batch or the batch
-- sees it). If one changed, it writes nothing and fails with serialization_failure (40001); if
-- another transaction recorded one of the batch's request ids meanwhile, the insert fails with
-- unique_violation (23505). Either way the bank decides the
-- batch again, inside a transaction holding its locks (where this check always passes).
--
-- Then, in one statement: the ledger rows in order (ids from the identity, drawn after the
-- locks, so each account's rows are numbered in the order they were made), the request ids'
-- outcomes (an applied transfer's transaction id is its TRANSFER_OUT row's id), the accounts'
-- new balances and fences. Returns each applied request id with that row's id.
CREATE FUNCTION bank_write_transfers(
    seen_ids TEXT[], seen_balances BIGINT[], seen_fences_any BIGINT[], seen_fences_write BIGINT[],
    live_sessions TEXT[],
    row_accounts TEXT[], row_requests TEXT[], row_kinds TEXT[], row_amounts BIGINT[],
    row_balances BIGINT[], row_counterparties TEXT[],
    outcome_requests TEXT[], outcome_params TEXT[], outcome_balances BIGINT[],
    outcome_rejections TEXT[],
    new_ids TEXT[], new_balances BIGINT[], new_fences_any BIGINT[], new_fences_write BIGINT[],
    at_ms BIGINT
) RETURNS TABLE (applied_request TEXT, out_row BIGINT) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM accounts WHERE id = ANY (seen_ids) ORDER BY id FOR UPDATE;
    IF EXISTS (
        SELECT FROM accounts AS a
        JOIN unnest(seen_ids, seen_balances, seen_fences_any, seen_fences_write)
            AS s (id, balance, fence_any, fence_write) ON a.id = s.id
        WHERE (a.balance_cents, a.fence_any, a.fence_write)
            IS DISTINCT FROM (s.balance, s.fence_any, s.fence_write)
    ) THEN
        RAISE EXCEPTION 'an account of the batch changed after it was read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    PERFORM FROM sessions WHERE token_hash = ANY (live_sessions) ORDER BY token_hash FOR SHARE;
    IF (SELECT count(*) FROM sessions
        WHERE token_hash = ANY (live_sessions) AND expires_ms > at_ms)
        <> cardinality(live_sessions) THEN
        RAISE EXCEPTION 'a session of the batch ended after it was read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN QUERY
    WITH ledger_rows AS (
        INSERT INTO ledger (account_id, request_id, kind, amount_cents, balance_after_cents,
            counterparty, time_ms)
        SELECT t.a, t.r, t.k, t.amount, t.after, t.c, at_ms
        FROM unnest(row_accounts, row_requests, row_kinds, row_amounts, row_balances,
            row_counterparties) WITH ORDINALITY AS t (a, r, k, amount, after, c, n)
        ORDER BY t.n
        RETURNING ledger.id, ledger.request_id, ledger.kind
    ), outcomes AS (
        INSERT INTO requests (request_id, params, transaction_id, balance_cents, rejection,
            created_ms)
        SELECT x.r, x.p, coalesce((SELECT l.id::text FROM ledger_rows AS l
            WHERE l.request_id = x.r AND l.kind = 'TRANSFER_OUT'), ''), x.b, x.j, at_ms
        FROM unnest(outcome_requests, outcome_params, outcome_balances, outcome_rejections)
            AS x (r, p, b, j)
    ), balances AS (
        UPDATE accounts AS a
        SET balance_cents = u.b, fence_any = u.fa, fence_write = u.fw
        FROM unnest(new_ids, new_balances, new_fences_any, new_fences_write) AS u (id, b, fa, fw)
        WHERE a.id = u.id
    )
    SELECT l.request_id, l.id FROM ledger_rows AS l WHERE l.kind = 'TRANSFER_OUT';
END
$$;
