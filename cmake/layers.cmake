# The layers of src/: which areas each area of src/ may include headers from and link
# against. This file is the one statement of the rule: CMakeLists.txt builds one static
# library per area from ATTNSPARSE_AREAS and links it to exactly the areas named here, and
# cmake/check_layers.cmake (ctest -R layering) fails when a file in src/<area> includes a
# header of an area its list does not name. Dependencies point down (docs/architecture.md).
#
# AREA_<area>: the areas that src/<area> may use besides itself (spelled out in full, not
# transitively: model uses ops, and lists ops).

# Libraries, bottom up.
set(AREA_core "")
set(AREA_io core)
set(AREA_ops core)
set(AREA_report io core)
set(AREA_model io ops core)
set(AREA_policies model ops io core)
set(AREA_analysis policies model ops io core)
set(AREA_theory analysis policies model ops io report core)
set(AREA_train model ops io core)
set(ATTNSPARSE_AREAS core io report ops model policies analysis theory train)

# Frontends and plug-ins, built by their own rules in CMakeLists.txt and src/python/.
set(AREA_dist analysis policies model ops io core)
set(AREA_python theory analysis policies model ops io report core)
set(AREA_cli dist train theory analysis policies model ops io report core)
set(ATTNSPARSE_FRONTENDS dist python cli)
