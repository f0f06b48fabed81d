-- Runs health.lua on each fixture: lua5.4 gitops/argocd/test.lua (from the repository root).
local here = arg[0]:match("(.*/)") or "./"
local fixtures = dofile(here .. "fixtures.lua")
local failures = 0
for _, case in ipairs(fixtures) do
  obj = case.obj
  local hs = dofile(here .. "health.lua")
  if hs.status ~= case.status then
    failures = failures + 1
    print(string.format("FAIL %s: got %s (%s), want %s", case.name, hs.status, hs.message, case.status))
  else
    print(string.format("ok   %s: %s", case.name, hs.status))
  end
end
print(string.format("%d passed, %d failed", #fixtures - failures, failures))
os.exit(failures == 0 and 0 or 1)
