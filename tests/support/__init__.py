"""What only the tests use: an ASGI driver (``asgi``), model pieces built directly (``models``),
the float64 reference implementations (``reference``) and a faulty GPU stand-in
(``faulty_gpu``). What the tests share with bench/, load/ and deploy/ is in ``devtools``."""
