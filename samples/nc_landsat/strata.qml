<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1.0" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
        <paletteEntry value="1" label="developed" color="#d7191c" alpha="255"/>
        <paletteEntry value="2" label="agriculture" color="#f4d03f" alpha="255"/>
        <paletteEntry value="3" label="herbaceous" color="#a6d96a" alpha="255"/>
        <paletteEntry value="4" label="shrubland" color="#8c6d31" alpha="255"/>
        <paletteEntry value="5" label="forest" color="#1a7837" alpha="255"/>
        <paletteEntry value="6" label="water" color="#2b83ba" alpha="255"/>
        <paletteEntry value="7" label="sediment" color="#d9c89e" alpha="255"/>
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
