"""The paper's claims judged on this study's runs: ``reproduced``, ``partly`` or ``not reproduced``.

``core`` is the generic machinery (paired effects, ``Claim`` records, the verdict rules,
formatting); the other modules are one notebook's claim set each: ``complexity`` (01, the cost
claim), ``consistency`` (02, Fig. 4), ``main_results`` (03 and 07, Table 4),
``sequence_length`` (04, Fig. 5), ``ablations`` (05, Fig. 6) and ``lifecycle`` (09,
TWIN-V2 beyond TWIN's window).
"""
