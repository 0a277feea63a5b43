-- wrk: POST /api/v1/sync/pull of one full page from the start of the log.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VS_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"since_sequence":0,"page_limit":0}'
