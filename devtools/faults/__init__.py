"""The independent fault harness (issue 9, part 5; docs/faults.md).

Real `warnd serve` processes on PostgreSQL, the Tencent Cloud SMS simulator (the real SDK's
wire API) appending every accepted number and text to a log before it answers, warnings
driven through the HTTP API, replies through the webhook of whichever instance is up, and
instances SIGKILLed and restarted at seeded random moments. The verdict comes from the
provider's log and the database only: `harness.run(Scenario(...))` → `Report`.

    python -m devtools.faults                # the long runs, a Markdown table of results
    python -m devtools.faults --quick        # the short runs (the test suite runs these)
"""
