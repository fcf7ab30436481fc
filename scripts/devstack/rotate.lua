-- wrk script for the end-to-end benchmark: every request carries a trusted hop's XFCC, drawn
-- at random from CERTBIND_XFCC_FILE (one element per line; one line = one warm card), and
-- CERTBIND_BEARER as its bearer token when set. Every variant runs this same script, so wrk's
-- own cost per request is the same for all.
local values = {}
for line in io.lines(os.getenv("CERTBIND_XFCC_FILE")) do
  values[#values + 1] = line
end
local count = #values
local bearer = os.getenv("CERTBIND_BEARER")
if bearer and bearer ~= "" then
  wrk.headers["authorization"] = "Bearer " .. bearer
end

request = function()
  wrk.headers["x-forwarded-client-cert"] = values[math.random(count)]
  return wrk.format(nil, nil)
end
