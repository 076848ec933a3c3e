-- Runs an Argo CD health script the way Argo CD does (the script is a chunk that reads the
-- global `obj` and returns `hs`) over recorded objects.
-- Usage: lua5.1 argocd.lua SCRIPT CASES; CASES is a Lua file returning {{name=..., obj=...}, ...}.
-- Prints one line per case: name, hs.status and hs.message, separated by tabs.
local script = assert(loadfile(arg[1]))
local cases = assert(loadfile(arg[2]))()
for _, case in ipairs(cases) do
  obj = case.obj
  local hs = script()
  local message = string.gsub(tostring(hs.message), "[\t\n]", " ")
  io.write(case.name, "\t", tostring(hs.status), "\t", message, "\n")
end
