"""Rule embedded_figure: a figure as an <img> element with the PNG inside, for the report's front page."""

from wfutil import start, write_text

log = start(snakemake, tensorflow=False)

from exactsnn.tables import embedded_image

write_text(snakemake.output[0], embedded_image(snakemake.input[0]))
log.info("%s embedded in %s", snakemake.input[0], snakemake.output[0])
