Return-Path: <dmarchelp@yahooinc.com>
From: dmarchelp@yahooinc.com
To: dmarc-reports@example.com
Subject: Report Domain: example.com Submitter: Yahoo
Date: Sun, 02 Nov 2025 06:00:00 +0000
Message-ID: <542.yahoo.com!example.com!1762041600!1762127999.xml.gz>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_report_yahoo.com_example.com_1762041600_1762127999.xml.gz"

--=_report_yahoo.com_example.com_1762041600_1762127999.xml.gz
Content-Type: text/plain; charset=UTF-8

This is an aggregate report from dmarchelp@yahooinc.com.

--=_report_yahoo.com_example.com_1762041600_1762127999.xml.gz
Content-Type: application/gzip; name="yahoo.com!example.com!1762041600!1762127999.xml.gz"
Content-Disposition: attachment; filename="yahoo.com!example.com!1762041600!1762127999.xml.gz"
Content-Transfer-Encoding: base64

H4sICGDzBmkC/3lhaG9vLmNvbSFleGFtcGxlLmNvbSExNzYyMDQxNjAwITE3NjIxMjc5OTkueG1s
AMxVW27bMBD8zymEHEAUZdeugS3Ta/RLWEsrm4j4wJLK4/aFQr1iB24QtEC/zN0d7cyQAxgeXkyX
PREH7eyPe5kX9w/qDlqi5oj1o7rLMmDyjmNlKGKDEYdeloHjU2XRkPqFZ+dAzHUak0HdqcYg12fq
/M/XAaVtndfOgEjThBzX60bJ/a4stnJXFPlW7svdBsQyTOAGI1WM9jTyZBkc6aTt6lsQqTPNyabN
stwfDgcQQ52WiffbZra1U/Cu0/Vr5ftjp8OZZiHOoLaKXtD4jpKrsZcA2DxqoxhEOozN4Nu33vCb
Wl5ZZwmEn+o6Kjm4GA5vqj5SAEy140kMu+fZbnA911Rpr8pikxe5lJt8D2JpT8Da9TaqUpYg0nEa
jHz0hF2PcXKcXOvgXdBROzvKXndWuMGyxxBALO6TPN+Og/kKVh4vOEHMzkA3ZKNuNXGYPzsTNsRV
y84oS88hf/cc6+m47moJYB/PFVPou7jsvdD8p7dOxqijOjpWHFCCmMsFkVhG92MxX8CaElZXs9Bf
G7zScJNhiZy4ND2Apzh9Jlny8D3/JnNZFLeitf1XwWpRdx8GKw3+crD+h0w11GLfxZuxIjbE7Pgr
2fpUrIJrY7rhL0ULxPKv8jsAAP//JAiv0HcGAAA=
--=_report_yahoo.com_example.com_1762041600_1762127999.xml.gz--
