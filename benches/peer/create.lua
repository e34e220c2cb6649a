-- wrk: POST a new Patient each time (the same body; neither server needs it unique).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = '{"resourceType":"Patient","name":[{"family":"Nguyễn","given":["Văn","An"]}],"gender":"male","birthDate":"1985-03-12","telecom":[{"system":"phone","value":"0905123456"}]}'
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end

done = function(summary) io.write(string.format("non-2xx: %d\n", summary.errors.status)) end
