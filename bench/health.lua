-- wrk: GET of the health endpoint (database query + cached blob probe).
wrk.method = "GET"
