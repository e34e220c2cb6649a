-- wrk: GET the URL given on the command line (a read by id, or a search).
wrk.headers["Accept"] = "application/fhir+json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
done = function(summary) io.write(string.format("non-2xx: %d\n", summary.errors.status)) end
